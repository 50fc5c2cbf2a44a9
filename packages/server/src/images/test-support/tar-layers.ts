/** Test support: tar layers made entry by entry (tar-stream's packer), crafted ones included. */
import { gzipSync } from "node:zlib";
import { type Header, pack as tarPack } from "tar-stream";

export interface TarEntry {
  readonly name: string;
  readonly type?: "file" | "directory" | "symlink" | "link" | "character-device" | "block-device" | "fifo";
  readonly content?: string | Buffer;
  readonly linkname?: string;
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
  readonly mtime?: Date;
  readonly devmajor?: number;
  readonly devminor?: number;
  /** Extra PAX records (they force a PAX header). */
  readonly pax?: Record<string, string>;
}

/** An uncompressed tar of `entries`, in order. */
export async function tarOf(entries: readonly TarEntry[]): Promise<Buffer> {
  const pack = tarPack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  for (const e of entries) {
    const content = e.content === undefined ? undefined : Buffer.from(e.content);
    const header = {
      name: e.name,
      type: e.type ?? "file",
      mode: e.mode,
      uid: e.uid,
      gid: e.gid,
      mtime: e.mtime ?? new Date(1_700_000_000_000),
      linkname: e.linkname,
      devmajor: e.devmajor,
      devminor: e.devminor,
      size: content?.length ?? 0,
      ...(e.pax !== undefined ? { pax: e.pax } : {}),
    } as Header;
    await new Promise<void>((resolve, reject) => {
      const sink = pack.entry(header, content ?? Buffer.alloc(0), (error) => (error ? reject(error) : resolve()));
      void sink;
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

export const gzipOf = (bytes: Buffer): Buffer => gzipSync(bytes);

/** `bytes` as a stream of chunks of `size` bytes. */
export async function* chunksOf(bytes: Uint8Array, size = 64 * 1024): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

/**
 * One ustar file entry whose name is `name`'s bytes as they are (tar-stream's packer would
 * turn a non-ASCII name into a UTF-8 PAX path), followed by the end of the archive.
 */
export function rawTarFile(name: Buffer, content: Buffer): Buffer {
  const padding = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([ustarHeader(name, content.length), content, padding, Buffer.alloc(1024)]);
}

/**
 * A tar of `count` empty files in its root, with names of 100 bytes (one ustar header each):
 * a layer that is small to send but makes the unpacker keep a record of every file.
 */
export function manyFilesTar(count: number): Buffer {
  const headers: Buffer[] = [];
  for (let i = 0; i < count; i++) headers.push(ustarHeader(Buffer.from(String(i).padStart(100, "f")), 0));
  return Buffer.concat([...headers, Buffer.alloc(1024)]);
}

/** A ustar header of a regular file (mode 0644, owned by 0:0) named by `name`'s first 100 bytes. */
function ustarHeader(name: Buffer, size: number): Buffer {
  const header = Buffer.alloc(512);
  name.copy(header, 0, 0, Math.min(100, name.length));
  const octal = (value: number, offset: number, length: number) =>
    header.write(`${value.toString(8).padStart(length - 1, "0")}\0`, offset, length, "ascii");
  octal(0o644, 100, 8);
  octal(0, 108, 8);
  octal(0, 116, 8);
  octal(size, 124, 12);
  octal(1_700_000_000, 136, 12);
  header.write("0", 156, 1, "ascii");
  header.write("ustar\u000000", 257, 8, "ascii");
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8, "ascii");
  return header;
}
