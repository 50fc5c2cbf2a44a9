/**
 * Reads a tar archive held in memory (the fake keeps everything in memory): ustar headers,
 * with the PAX and GNU long-name extensions that `docker save`, OCI tools and GNU tar write.
 * Browser-safe. Entries come out as the archive has them; their names are not trusted here
 * (see fake-archive.ts, which confines them).
 */

export interface TarEntry {
  /** The name as the archive spells it (PAX `path` or GNU long name applied). */
  readonly name: string;
  readonly type: "file" | "directory" | "symlink" | "hardlink" | "other";
  readonly mode: number;
  /** Symlink or hard link target. */
  readonly linkName: string;
  /** A view into the archive (files only; empty otherwise). */
  readonly data: Uint8Array;
}

/** The archive is not a tar this reader understands; the message says where. */
export class TarError extends Error {
  override readonly name = "TarError";
}

const BLOCK = 512;
const decoder = new TextDecoder();

function text(block: Uint8Array, at: number, length: number): string {
  const field = block.subarray(at, at + length);
  const end = field.indexOf(0);
  return decoder.decode(end === -1 ? field : field.subarray(0, end));
}

/** An octal number field, or GNU's base-256 form (high bit of the first byte set). */
function number(block: Uint8Array, at: number, length: number): number {
  const field = block.subarray(at, at + length);
  if (((field[0] as number) & 0x80) !== 0) {
    let value = (field[0] as number) & 0x7f;
    for (let i = 1; i < field.length; i++) value = value * 256 + (field[i] as number);
    return value;
  }
  const digits = text(block, at, length).trim();
  if (digits === "") return 0;
  if (!/^[0-7]+$/.test(digits)) throw new TarError(`a header field is not an octal number: ${JSON.stringify(digits)}`);
  return Number.parseInt(digits, 8);
}

function checksumOk(block: Uint8Array): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : (block[i] as number);
  return sum === number(block, 148, 8);
}

/** PAX extended header records ("LEN key=value\n"). */
function paxRecords(data: Uint8Array): Map<string, string> {
  const records = new Map<string, string>();
  let at = 0;
  while (at < data.byteLength) {
    const space = data.indexOf(0x20, at);
    if (space === -1) break;
    const length = Number.parseInt(decoder.decode(data.subarray(at, space)), 10);
    if (!Number.isSafeInteger(length) || length <= space - at || at + length > data.byteLength) {
      throw new TarError("a PAX header record is malformed");
    }
    const record = decoder.decode(data.subarray(space + 1, at + length - 1));
    const eq = record.indexOf("=");
    if (eq > 0) records.set(record.slice(0, eq), record.slice(eq + 1));
    at += length;
  }
  return records;
}

const TYPES: Record<string, TarEntry["type"]> = {
  "0": "file",
  "\0": "file",
  "7": "file",
  "5": "directory",
  "2": "symlink",
  "1": "hardlink",
};

export function readTar(archive: Uint8Array): TarEntry[] {
  const entries: TarEntry[] = [];
  let at = 0;
  let pax = new Map<string, string>();
  let longName: string | undefined;
  let longLink: string | undefined;
  while (at + BLOCK <= archive.byteLength) {
    const header = archive.subarray(at, at + BLOCK);
    if (header.every((b) => b === 0)) break; // the end-of-archive blocks
    if (!checksumOk(header)) throw new TarError(`the header at byte ${at} has a bad checksum: not a tar archive?`);
    const flag = String.fromCharCode(header[156] as number);
    const size = pax.has("size") ? Number(pax.get("size")) : number(header, 124, 12);
    if (!Number.isSafeInteger(size) || size < 0) throw new TarError(`the entry at byte ${at} has a bad size`);
    const start = at + BLOCK;
    if (start + size > archive.byteLength)
      throw new TarError(`the entry at byte ${at} runs past the end of the archive`);
    const data = archive.subarray(start, start + size);
    at = start + Math.ceil(size / BLOCK) * BLOCK;
    if (flag === "x") {
      pax = paxRecords(data);
      continue;
    }
    if (flag === "g") continue; // global PAX headers: nothing sbx needs
    if (flag === "L" || flag === "K") {
      const value = decoder.decode(data).replace(/\0+$/, "");
      if (flag === "L") longName = value;
      else longLink = value;
      continue;
    }
    const magic = text(header, 257, 6);
    const prefix = magic === "ustar" ? text(header, 345, 155) : "";
    const shortName = text(header, 0, 100);
    const name = pax.get("path") ?? longName ?? (prefix ? `${prefix}/${shortName}` : shortName);
    const linkName = pax.get("linkpath") ?? longLink ?? text(header, 157, 100);
    const type = TYPES[flag] ?? "other";
    entries.push({
      name,
      type,
      mode: number(header, 100, 8) & 0o7777,
      linkName,
      data: type === "file" ? data : new Uint8Array(0),
    });
    pax = new Map();
    longName = undefined;
    longLink = undefined;
  }
  return entries;
}
