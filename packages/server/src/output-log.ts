/**
 * A process's retained stdout or stderr: an append-only byte log addressed by offset.
 * Every byte is written to a file (so finished output survives a server restart); the most
 * recent MEMORY_TAIL_BYTES also stay in memory so live readers never touch the disk.
 */
import { closeSync, openSync, readSync, writeSync } from "node:fs";
import { Changes } from "@sbx/server-kit";

/** Bytes of recent output kept in memory per stream; older bytes are read from the file. */
export const MEMORY_TAIL_BYTES = 1024 * 1024;
const MAX_CHUNK = 64 * 1024;
/**
 * Readers that are behind get adjacent chunks joined up to this size: fewer, larger messages.
 * Not larger: a message is the unit of progress when a connection keeps dropping (a resumed
 * read restarts at the first byte of the message that was cut).
 */
const MAX_READ = 256 * 1024;

interface Chunk {
  readonly offset: number;
  readonly data: Uint8Array;
}

export class OutputLog {
  readonly #path: string;
  #fd: number | undefined;
  #length: number;
  #closed: boolean;
  readonly #tail: Chunk[] = [];
  #tailBytes = 0;
  readonly #changes = new Changes();

  /** A new log, or (with `length` and `closed`) one reopened from its file after a restart. */
  constructor(path: string, existing?: { length: number; closed: boolean }) {
    this.#path = path;
    this.#length = existing?.length ?? 0;
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
    writeSync(this.#fd, data);
    for (let at = 0; at < data.byteLength; at += MAX_CHUNK) {
      const part = data.slice(at, at + MAX_CHUNK);
      this.#tail.push({ offset: this.#length, data: part });
      this.#length += part.byteLength;
      this.#tailBytes += part.byteLength;
    }
    while (this.#tailBytes > MEMORY_TAIL_BYTES && this.#tail.length > 1) {
      this.#tailBytes -= (this.#tail.shift() as Chunk).data.byteLength;
    }
    this.#changes.notify();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
    this.#changes.notify();
  }

  /** Chunks from `from` on, following new output, until the log is closed and drained. */
  async *read(from: number, signal?: AbortSignal): AsyncGenerator<Chunk> {
    let at = from;
    for (;;) {
      signal?.throwIfAborted();
      if (at < this.#length) {
        const first = this.#chunkAt(at);
        if (this.#length - at <= first.data.byteLength) {
          yield first;
          at += first.data.byteLength;
          continue;
        }
        const parts = [first.data];
        let size = first.data.byteLength;
        while (at + size < this.#length && size < MAX_READ) {
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
  }

  #chunkAt(offset: number): Chunk {
    const first = this.#tail[0];
    if (first && offset >= first.offset) {
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
    // Older than the in-memory tail: read it back from the file.
    const end = first ? first.offset : this.#length;
    const size = Math.min(MAX_CHUNK, end - offset);
    const data = new Uint8Array(size);
    const fd = openSync(this.#path, "r");
    try {
      let got = 0;
      while (got < size) {
        const n = readSync(fd, data, got, size - got, offset + got);
        if (n === 0) break;
        got += n;
      }
      return { offset, data: data.subarray(0, got) };
    } finally {
      closeSync(fd);
    }
  }
}
