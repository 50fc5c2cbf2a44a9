/**
 * A process's retained stdout or stderr: an append-only byte log addressed by offset.
 * Every byte is written to a file (so finished output survives a server restart); the most
 * recent MEMORY_TAIL_BYTES also stay in memory so live readers never touch the disk.
 *
 * Appends are gathered and written in batches (one writev per FLUSH_BYTES, or at the end of
 * the current event-loop turn): a write per 64 KiB pipe read costs ext4 several times more
 * per byte. Readers see only bytes already written to the file, so a reader never holds a
 * byte that a server killed at that moment would not have after its restart.
 */
import { closeSync, openSync, readSync, writeSync, writevSync } from "node:fs";
import { Changes } from "@sbx/server-kit";

/** Bytes of recent output kept in memory per stream; older bytes are read from the file. */
export const MEMORY_TAIL_BYTES = 1024 * 1024;
const MAX_CHUNK = 64 * 1024;
/** Pending appends are written once they reach this size (else at the end of the turn). */
const FLUSH_BYTES = 1024 * 1024;
/**
 * Readers that are behind get adjacent chunks joined up to this size: fewer, larger messages.
 * Not larger: a message is the unit of progress when a connection keeps dropping (a resumed
 * read restarts at the first byte of the message that was cut).
 */
export const MAX_READ = 256 * 1024;

interface Chunk {
  readonly offset: number;
  readonly data: Uint8Array;
}

export class OutputLog {
  readonly #path: string;
  #fd: number | undefined;
  /** Bytes written to the file: what readers see. */
  #length: number;
  /** Bytes appended, written or not. */
  #appended: number;
  #pending: Uint8Array[] = [];
  #flushScheduled = false;
  #closed: boolean;
  readonly #tail: Chunk[] = [];
  #tailBytes = 0;
  readonly #changes = new Changes();

  /** A new log, or (with `length` and `closed`) one reopened from its file after a restart. */
  constructor(path: string, existing?: { length: number; closed: boolean }) {
    this.#path = path;
    this.#length = existing?.length ?? 0;
    this.#appended = this.#length;
    this.#closed = existing?.closed ?? false;
    if (!this.#closed) this.#fd = openSync(path, existing ? "a" : "w", 0o600);
  }

  get length(): number {
    return this.#length;
  }

  get closed(): boolean {
    return this.#closed;
  }

  append(data: Uint8Array): void {
    if (this.#closed || this.#fd === undefined || data.byteLength === 0) return;
    for (let at = 0; at < data.byteLength; at += MAX_CHUNK) {
      // The caller hands over `data` (a fresh read buffer): views of it, not copies.
      const part = data.subarray(at, at + MAX_CHUNK);
      this.#tail.push({ offset: this.#appended, data: part });
      this.#appended += part.byteLength;
      this.#tailBytes += part.byteLength;
    }
    this.#pending.push(data);
    if (this.#appended - this.#length >= FLUSH_BYTES) this.#flush();
    else if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => {
        this.#flushScheduled = false;
        this.#flush();
      });
    }
  }

  /** Writes the pending appends to the file, then lets readers see them. */
  #flush(): void {
    if (this.#pending.length === 0 || this.#fd === undefined) return;
    const pending = this.#pending;
    this.#pending = [];
    const total = this.#appended - this.#length;
    const written = writevSync(this.#fd, pending);
    if (written < total) {
      // A short write (rare on regular files): write the rest plainly.
      let skip = written;
      for (const data of pending) {
        if (skip >= data.byteLength) {
          skip -= data.byteLength;
          continue;
        }
        let at = skip;
        while (at < data.byteLength) at += writeSync(this.#fd, data, at);
        skip = 0;
      }
    }
    this.#length = this.#appended;
    // Everything is on file now, so the tail can shrink to its bound.
    while (this.#tailBytes > MEMORY_TAIL_BYTES && this.#tail.length > 1) {
      this.#tailBytes -= (this.#tail.shift() as Chunk).data.byteLength;
    }
    this.#changes.notify();
  }

  close(): void {
    if (this.#closed) return;
    this.#flush();
    this.#closed = true;
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
    this.#changes.notify();
  }

  /**
   * Chunks from `from` on, following new output, until the log is closed and drained.
   * A reader that is behind gets chunks of up to `maxRead` bytes: joined from the in-memory
   * tail, or read straight from the file when older than the tail.
   */
  async *read(from: number, signal?: AbortSignal, maxRead = MAX_READ): AsyncGenerator<Chunk> {
    let at = from;
    let fd: number | undefined;
    try {
      for (;;) {
        signal?.throwIfAborted();
        if (at < this.#length) {
          const tailStart = this.#tail[0]?.offset ?? this.#length;
          if (at < tailStart) {
            fd ??= openSync(this.#path, "r");
            const data = readAt(fd, at, Math.min(maxRead, tailStart - at));
            yield { offset: at, data };
            at += data.byteLength;
            continue;
          }
          const first = this.#chunkAt(at);
          if (this.#length - at <= first.data.byteLength) {
            yield first;
            at += first.data.byteLength;
            continue;
          }
          const parts = [first.data];
          let size = first.data.byteLength;
          while (at + size < this.#length && size < maxRead) {
            const next = this.#chunkAt(at + size);
            parts.push(next.data);
            size += next.data.byteLength;
          }
          yield { offset: at, data: Buffer.concat(parts, size) };
          at += size;
          continue;
        }
        if (this.#closed) return;
        await this.#changes.wait(undefined, signal);
        // Let bytes that arrive in the same instant join this message: far fewer, larger
        // messages at high rates, for well under a millisecond of added latency.
        await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }

  /** The rest of the in-memory chunk holding `offset` (which is within the tail). */
  #chunkAt(offset: number): Chunk {
    let lo = 0;
    let hi = this.#tail.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.#tail[mid] as Chunk).offset <= offset) lo = mid;
      else hi = mid - 1;
    }
    const chunk = this.#tail[lo] as Chunk;
    return { offset, data: chunk.data.subarray(offset - chunk.offset) };
  }
}

/** Up to `size` bytes of the file at `offset` (fewer only at its end). */
function readAt(fd: number, offset: number, size: number): Uint8Array {
  const data = Buffer.allocUnsafe(size);
  let got = 0;
  while (got < size) {
    const n = readSync(fd, data, got, size - got, offset + got);
    if (n === 0) break;
    got += n;
  }
  return data.subarray(0, got);
}
