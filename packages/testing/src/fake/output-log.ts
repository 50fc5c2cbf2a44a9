import { Changes } from "@sbx/server-kit";

/**
 * An append-only byte log addressed by offset, with readers that follow it live: the fake's
 * model of a process's retained stdout or stderr.
 */
export interface LogChunk {
  readonly offset: number;
  readonly data: Uint8Array;
}

const MAX_CHUNK = 64 * 1024;

export class OutputLog {
  readonly #chunks: LogChunk[] = [];
  #length = 0;
  #closed = false;
  readonly #changes = new Changes();

  get length(): number {
    return this.#length;
  }

  get closed(): boolean {
    return this.#closed;
  }

  append(data: Uint8Array): void {
    if (this.#closed || data.byteLength === 0) return;
    for (let at = 0; at < data.byteLength; at += MAX_CHUNK) {
      const part = data.slice(at, at + MAX_CHUNK);
      this.#chunks.push({ offset: this.#length, data: part });
      this.#length += part.byteLength;
    }
    this.#changes.notify();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#changes.notify();
  }

  /** Chunks from `from` on, following new output, until the log is closed. */
  async *read(from: number, signal?: AbortSignal): AsyncGenerator<LogChunk> {
    let at = from;
    for (;;) {
      signal?.throwIfAborted();
      if (at < this.#length) {
        for (let i = this.#indexOf(at); i < this.#chunks.length; i++) {
          const chunk = this.#chunks[i] as LogChunk;
          const skip = at - chunk.offset;
          const data = skip > 0 ? chunk.data.subarray(skip) : chunk.data;
          yield { offset: at, data };
          at += data.byteLength;
        }
        continue;
      }
      if (this.#closed) return;
      await this.#changes.wait(undefined, signal);
    }
  }

  /** Index of the chunk containing byte `offset` (binary search). */
  #indexOf(offset: number): number {
    let lo = 0;
    let hi = this.#chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.#chunks[mid] as LogChunk).offset <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}
