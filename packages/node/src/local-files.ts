/** Local files for copyFromLocal / copyToLocal and images.import, streamed with Node's fs. */
import { randomBytes } from "node:crypto";
import { type FileHandle, lstat, mkdir, open, readdir, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { type LocalFiles, type LocalImageFiles, skipBytes } from "@sbx/core/adapter";

export const nodeLocalFiles: LocalFiles = {
  read: readPieces,
  async write(path, chunks) {
    await mkdir(dirname(path), { recursive: true });
    // Written beside the target, then renamed: a reader never sees half a file.
    const temp = join(dirname(path), `.${basename(path)}.sbx-${process.pid}-${randomBytes(6).toString("hex")}`);
    const file = await open(temp, "wx"); // never another write's temporary file
    let writing = true;
    try {
      await writeInOrder(file, chunks);
      writing = false;
      await file.close();
      await rename(temp, path);
    } catch (error) {
      if (writing) await file.close().catch(() => {});
      await rm(temp, { force: true });
      throw error;
    }
  },
};

/** Local files for `client.images.import(path)`: archives and OCI layout directories. */
export const nodeLocalImageFiles: LocalImageFiles = {
  read: readPieces,
  async stat(path, follow) {
    const info = await (follow ? stat(path) : lstat(path));
    return { type: info.isFile() ? "file" : info.isDirectory() ? "directory" : "other", size: info.size };
  },
  list: (path) => readdir(path),
};

/** Bytes per read of a local file. */
const READ_BYTES = 1024 * 1024;

/**
 * A local file in pieces of up to 1 MiB, the next read while the caller takes the current
 * one. Two buffers take turns (a piece is valid until the next is asked for, as `LocalFiles`
 * allows): fresh memory for every read costs a page fault per page, measured at about three
 * times the system time of reading into reused buffers.
 */
async function* readPieces(path: string): AsyncGenerator<Uint8Array> {
  const file = await open(path, "r");
  const buffers = [Buffer.allocUnsafeSlow(READ_BYTES), Buffer.allocUnsafeSlow(READ_BYTES)] as const;
  let turn = 0;
  const readNext = () => {
    const buffer = buffers[turn] as Buffer;
    turn ^= 1;
    // From the file's own position (one read at a time): pipes and FIFOs work too.
    const reading = file.read(buffer, 0, READ_BYTES, null).then(({ bytesRead }) => buffer.subarray(0, bytesRead));
    reading.catch(() => {}); // seen when awaited; not an unhandled rejection while the caller is busy
    return reading;
  };
  let next = readNext();
  try {
    for (;;) {
      const piece = await next;
      if (piece.byteLength === 0) return;
      next = readNext();
      yield piece;
    }
  } finally {
    await next.catch(() => {}); // the file must not close under a read in flight
    await file.close();
  }
}

/** Bytes gathered while a write is in flight before the source waits for it. */
const MAX_WAITING_BYTES = 16 * 1024 * 1024;

/**
 * Writes the pieces one after another, with one `writev` in flight while the next batch
 * gathers: the disk write overlaps the next pieces arriving, with no copy and no stream
 * machinery per piece (measured ~1.4× the throughput of `pipeline` into a `WriteStream`, at
 * about half the CPU, for a 1 GiB download).
 */
export async function writeInOrder(file: FileHandle, pieces: AsyncIterable<Uint8Array>): Promise<void> {
  let batch: Uint8Array[] = [];
  let batchBytes = 0;
  let position = 0;
  let writing: Promise<void> | undefined;
  let failure: { error: unknown } | undefined;
  const startWrite = () => {
    const pending = batch;
    const at = position;
    position += batchBytes;
    batch = [];
    batchBytes = 0;
    writing = writeFully(file, pending, at).then(
      () => {
        writing = undefined;
      },
      (error: unknown) => {
        writing = undefined;
        failure = { error };
      },
    );
  };
  try {
    for await (const piece of pieces) {
      if (failure) break;
      if (piece.byteLength === 0) continue;
      batch.push(piece);
      batchBytes += piece.byteLength;
      if (writing && batchBytes >= MAX_WAITING_BYTES) await writing;
      if (!writing && !failure) startWrite();
    }
  } finally {
    await writing; // never rejects; the file is not closed under a write in flight
  }
  if (!failure && batchBytes > 0) {
    startWrite();
    await writing;
  }
  if (failure) throw failure.error;
}

/** `writev` at `position` until every byte is written (a short write continues where it stopped). */
async function writeFully(file: FileHandle, pieces: Uint8Array[], position: number): Promise<void> {
  let rest = pieces;
  while (rest.length > 0) {
    const { bytesWritten } = await file.writev(rest, position);
    if (bytesWritten === 0) throw new Error("the local disk accepted no bytes");
    position += bytesWritten;
    rest = skipBytes(rest, bytesWritten);
  }
}
