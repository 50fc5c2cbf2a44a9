/**
 * Process output kept in memory (the fake's storage): an append-only byte log addressed by
 * offset, with readers that follow it live. Like the server's files it keeps at most
 * `retentionBytes` (dropping the oldest chunks), and a read of dropped bytes fails the same
 * way (OUT_OF_RANGE naming the first kept offset). Unlike them it never fails to store.
 */
import { Notifier } from "../notifier.js";
import { outputDropped } from "../output-errors.js";
import type { OutputLogOptions, OutputStorage, ProcessOutputLog } from "./output-storage.js";

export interface LogChunk {
  readonly offset: number;
  readonly data: Uint8Array;
}

const MAX_CHUNK = 64 * 1024;
/** The server's default bound per stream. */
export const DEFAULT_OUTPUT_RETENTION_BYTES = 64 * 1024 * 1024;

export class MemoryOutputLog implements ProcessOutputLog {
  #chunks: LogChunk[] = [];
  #length = 0;
  #firstKept = 0;
  #closed = false;
  readonly #changes = new Notifier();

  constructor(readonly retentionBytes = DEFAULT_OUTPUT_RETENTION_BYTES) {}

  get length(): number {
    return this.#length;
  }

  get firstKeptOffset(): number {
    return this.#firstKept;
  }

  get appendedLength(): number {
    return this.#length;
  }

  get closed(): boolean {
    return this.#closed;
  }

  append(data: Uint8Array): boolean {
    if (this.#closed || data.byteLength === 0) return true;
    for (let at = 0; at < data.byteLength; at += MAX_CHUNK) {
      const part = data.slice(at, at + MAX_CHUNK);
      this.#chunks.push({ offset: this.#length, data: part });
      this.#length += part.byteLength;
    }
    // Whole chunks go while the rest still holds the bound; then the oldest keeps only its end.
    let drop = 0;
    for (;;) {
      const size = (this.#chunks[drop] as LogChunk).data.byteLength;
      if (this.#length - this.#firstKept - size < this.retentionBytes) break;
      this.#firstKept += size;
      drop++;
    }
    if (drop > 0) this.#chunks.splice(0, drop);
    const excess = this.#length - this.#firstKept - this.retentionBytes;
    if (excess > 0) {
      const oldest = this.#chunks[0] as LogChunk;
      this.#chunks[0] = { offset: oldest.offset + excess, data: oldest.data.subarray(excess) };
      this.#firstKept += excess;
    }
    this.#changes.notify();
    return true;
  }

  drained(): Promise<void> {
    return Promise.resolve();
  }

  written(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#changes.notify();
  }

  remove(): void {
    this.close();
    this.#firstKept = this.#length;
    this.#chunks = [];
  }

  /** Chunks from `from` on, following new output, until the log is closed (chunks are already small). */
  async *read(from: number, signal?: AbortSignal, _maxRead?: number): AsyncGenerator<LogChunk> {
    let at = from;
    for (;;) {
      signal?.throwIfAborted();
      if (at < this.#firstKept) throw outputDropped(at, this.#firstKept);
      if (at < this.#length) {
        // Looked up again for every chunk: old chunks may be dropped while the reader waits.
        const chunk = this.#chunks[this.#indexOf(at)] as LogChunk;
        const skip = at - chunk.offset;
        const data = skip > 0 ? chunk.data.subarray(skip) : chunk.data;
        yield { offset: at, data };
        at += data.byteLength;
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

/** Output kept in memory for as long as the engine runs (nothing survives it). */
export const memoryOutputStorage = (): OutputStorage => ({
  open: (_sandbox, _process, _stream, options: OutputLogOptions) => new MemoryOutputLog(options.retentionBytes),
  restore: () => {
    const log = new MemoryOutputLog();
    log.close();
    return log;
  },
});
