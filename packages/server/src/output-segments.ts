/**
 * The files of an output log (see file-output-log.ts): a run of segment files, the first at `base`,
 * each later one at `base.<offset of its first byte>`. Naming them, finding them again after a
 * restart, and the asynchronous reads and writes the log does on them.
 */
import { open, read, readdirSync, statSync, writev } from "node:fs";
import { basename, dirname, join } from "node:path";

/** One segment file: the log's offset of its first byte, and its size. */
export interface Segment {
  readonly offset: number;
  size: number;
}

/** The file holding the segment that starts at `offset`. */
export function segmentPath(base: string, offset: number): string {
  return offset === 0 ? base : `${base}.${offset}`;
}

/** Writes `buffers` at the end of the file `fd`; resolves with the bytes written. */
export const writeToFile = (fd: number, buffers: Uint8Array[]): Promise<number> =>
  new Promise((resolve, reject) => writev(fd, buffers, (error, written) => (error ? reject(error) : resolve(written))));

/**
 * The segment files of the log at `base`, oldest first: `base` holds offset 0, `base.<n>` the
 * bytes from offset n. Only the contiguous run that ends with the newest counts (an older
 * file whose deletion did not happen before a crash is ignored).
 */
export function findSegments(base: string): Segment[] {
  const name = basename(base);
  let names: string[];
  try {
    names = readdirSync(dirname(base));
  } catch {
    return [];
  }
  const found: Segment[] = [];
  for (const entry of names) {
    let offset: number | undefined;
    if (entry === name) offset = 0;
    else if (entry.startsWith(`${name}.`) && /^[1-9]\d*$/.test(entry.slice(name.length + 1))) {
      offset = Number(entry.slice(name.length + 1));
    }
    if (offset === undefined || !Number.isSafeInteger(offset)) continue;
    try {
      const stat = statSync(join(dirname(base), entry));
      if (stat.isFile()) found.push({ offset, size: stat.size });
    } catch {}
  }
  found.sort((a, b) => a.offset - b.offset);
  let start = found.length - 1;
  while (start > 0) {
    const previous = found[start - 1] as Segment;
    if (previous.offset + previous.size !== (found[start] as Segment).offset) break;
    start--;
  }
  return found.slice(Math.max(start, 0));
}

/** A descriptor for reading `path`; undefined when the file is gone. */
export function openForReading(path: string): Promise<number | undefined> {
  return new Promise((resolve, reject) =>
    open(path, "r", (error, fd) => {
      if (error?.code === "ENOENT") resolve(undefined);
      else if (error) reject(error);
      else resolve(fd);
    }),
  );
}

/** Up to `size` bytes of the file at `offset` (fewer only at its end). */
export async function readAt(fd: number, offset: number, size: number): Promise<Uint8Array> {
  const data = Buffer.allocUnsafe(size);
  let got = 0;
  while (got < size) {
    const n = await new Promise<number>((resolve, reject) =>
      read(fd, data, got, size - got, offset + got, (error, bytes) => (error ? reject(error) : resolve(bytes))),
    );
    if (n === 0) break;
    got += n;
  }
  return data.subarray(0, got);
}
