/**
 * A process's retained stdout or stderr: an append-only byte log addressed by offset, kept in
 * files (so finished output survives a server restart) up to a bound per stream.
 *
 * On disk it is a run of segment files of `segmentBytes` each: the first at `base`, each later
 * one at `base.<offset of its first byte>` (output-segments.ts names, finds, reads and writes
 * them). The retention bound drops whole segments, oldest
 * first, so the kept bytes never exceed it; the first kept offset is the oldest segment's (a
 * restart reads it back from the names). A reader asking for a dropped offset gets
 * OUT_OF_RANGE naming the first kept offset.
 *
 * Writing never blocks the event loop: appends are queued and written by one asynchronous
 * writev at a time, batched (everything queued when the previous write ends). `append`
 * answers false once HIGH_WATER_BYTES are queued: the caller stops reading the process's pipe
 * until `drained()`, so a fast writer is slowed to disk speed and memory stays bounded.
 * Readers see only bytes already written, so a reader never holds a byte that a server killed
 * at that moment would not have after its restart.
 *
 * A failed write (a full disk) ends the log instead of throwing: the bytes written so far stay
 * readable, then readers get DATA_LOSS. While the log is open the most recent
 * MEMORY_TAIL_BYTES also stay in memory (live readers never touch the disk); a closed log keeps
 * nothing in memory.
 */
import { close, open, unlink } from "node:fs";
import { Notifier, outputDropped, outputLost } from "@sbx/server-kit";
import { findSegments, openForReading, readAt, type Segment, segmentPath, writeToFile } from "./output-segments.js";

/** Bytes of recent output kept in memory per open stream; older bytes are read from the files. */
export const MEMORY_TAIL_BYTES = 1024 * 1024;
/**
 * While a live reader has yet to read them, up to this many recent bytes stay in memory: a
 * reader a write batch or two behind (most of them: readers see a batch once it is written)
 * is served from memory, not from the files at a read per sliver of the tail it missed.
 */
export const READER_TAIL_BYTES = 4 * 1024 * 1024;
/** Default bound of the bytes kept per stream (see `FileOutputLogOptions.retentionBytes`). */
export const DEFAULT_RETENTION_BYTES = 64 * 1024 * 1024;
/** The smallest bound (two of the smallest segments). */
export const MIN_RETENTION_BYTES = 8 * 1024;
const MAX_CHUNK = 64 * 1024;
/** Queued bytes that start a write at once (else it starts at the end of the turn). */
const FLUSH_BYTES = 1024 * 1024;
/** Queued bytes past which `append` asks the caller to stop; it may go on below LOW_WATER_BYTES. */
export const HIGH_WATER_BYTES = 4 * 1024 * 1024;
const LOW_WATER_BYTES = 1024 * 1024;
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

/** Writes `buffers` at the end of the file `fd`; resolves with the bytes written. */
export type OutputWriter = (fd: number, buffers: Uint8Array[]) => Promise<number>;

export interface FileOutputLogOptions {
  /** Most bytes kept on disk; older output is dropped. Default DEFAULT_RETENTION_BYTES. */
  readonly retentionBytes?: number;
  /** Called once if storing output fails (the log has then ended; nothing is thrown). */
  readonly onError?: (error: Error) => void;
  /** How bytes reach the file (tests inject failures); default: node:fs `writev`. */
  readonly write?: OutputWriter;
}

export class FileOutputLog {
  readonly #base: string;
  readonly #retentionBytes: number;
  readonly #segmentBytes: number;
  readonly #onError: ((error: Error) => void) | undefined;
  readonly #write: OutputWriter;
  /** The files holding the kept bytes, oldest first; the last is the one being written. */
  readonly #segments: Segment[] = [];
  #fd: number | undefined;
  /** Bytes written to the files: what readers see. */
  #length = 0;
  /** Bytes appended, written or not. */
  #appended = 0;
  #firstKept = 0;
  #pending: Uint8Array[] = [];
  #writing = false;
  #writeScheduled = false;
  /** No more appends. */
  #closing = false;
  /** Closed and everything written (or failed): the length is final. */
  #closed = false;
  #failure: Error | undefined;
  #tail: Chunk[] = [];
  #tailBytes = 0;
  readonly #changes = new Notifier();
  #drainWaiters: (() => void)[] = [];
  /** Where each live reader is: the bound never drops a byte one of them has yet to read. */
  readonly #readers = new Set<{ at: number }>();

  constructor(base: string, options: FileOutputLogOptions = {}) {
    this.#base = base;
    const retention = options.retentionBytes ?? DEFAULT_RETENTION_BYTES;
    if (!Number.isSafeInteger(retention) || retention < MIN_RETENTION_BYTES) {
      throw new RangeError(`output retention must be at least ${MIN_RETENTION_BYTES} bytes, got ${retention}`);
    }
    this.#retentionBytes = retention;
    // Sixteen segments per bound: at least 7/8 of the bound stays readable after a drop.
    this.#segmentBytes = Math.min(64 * 1024 * 1024, Math.max(4096, Math.floor(retention / 16)));
    this.#onError = options.onError;
    this.#write = options.write ?? writeToFile;
  }

  /** A finished log read back from its files after a restart (empty when there are none). */
  static restore(base: string): FileOutputLog {
    const log = new FileOutputLog(base);
    const segments = findSegments(base);
    log.#segments.push(...segments);
    const last = segments.at(-1);
    log.#length = last ? last.offset + last.size : 0;
    log.#appended = log.#length;
    log.#firstKept = segments[0]?.offset ?? 0;
    log.#closing = true;
    log.#closed = true;
    return log;
  }

  /** Bytes readers can get. */
  get length(): number {
    return this.#length;
  }

  /** Bytes appended: the stream's length once writing has caught up. */
  get appendedLength(): number {
    return this.#appended;
  }

  /** The oldest offset still kept (0 until the retention bound drops something). */
  get firstKeptOffset(): number {
    return this.#firstKept;
  }

  /** True once no more bytes will ever be readable: closed and written (or failed). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes of output held in memory: the tail, and what is waiting to be written (the same views). */
  get memoryBytes(): number {
    return this.#appended - Math.min(this.#tail[0]?.offset ?? this.#length, this.#length);
  }

  /**
   * Queues `data` (handed over: views of it are kept, not copies). False: too much is waiting
   * to be written; stop appending until `drained()` resolves.
   */
  append(data: Uint8Array): boolean {
    if (this.#closing || this.#failure || data.byteLength === 0) return true;
    for (let at = 0; at < data.byteLength; at += MAX_CHUNK) {
      const part = data.subarray(at, at + MAX_CHUNK);
      this.#tail.push({ offset: this.#appended, data: part });
      this.#appended += part.byteLength;
      this.#tailBytes += part.byteLength;
    }
    this.#pending.push(data);
    this.#scheduleWrite();
    return this.#appended - this.#length < HIGH_WATER_BYTES && !this.#readerFallingBehind();
  }

  /**
   * True when the slowest live reader is so far behind that more output would soon push its
   * next bytes past the retention bound: the process is then slowed to that reader's pace
   * (as a pipe slows a writer to its reader's) instead of its output being dropped. Output
   * nobody is reading is still dropped past the bound.
   */
  #readerFallingBehind(): boolean {
    const slowest = this.#slowestReader();
    return slowest !== undefined && this.#appended - slowest >= this.#retentionBytes - 2 * this.#segmentBytes;
  }

  #slowestReader(): number | undefined {
    let slowest: number | undefined;
    for (const reader of this.#readers) if (slowest === undefined || reader.at < slowest) slowest = reader.at;
    return slowest;
  }

  /** Resolves once the bytes waiting to be written are few again (or the log has ended). */
  drained(): Promise<void> {
    if (this.#isDrained()) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /** Resolves once everything appended so far is written (or writing failed). */
  async written(): Promise<void> {
    while (!this.#failure && this.#length < this.#appended) await this.#changes.wait();
  }

  /** No more appends; the log ends once what is queued is written. */
  close(): void {
    if (this.#closing) return;
    this.#closing = true;
    this.#settle();
  }

  /** Ends the log and deletes its files (the process's retention ran out). */
  remove(): void {
    this.#fail(new Error("the output was deleted"), false);
    this.close();
    for (const segment of this.#segments.splice(0)) unlink(this.#pathOf(segment.offset), () => {});
  }

  #scheduleWrite(): void {
    if (this.#writing) return;
    if (this.#appended - this.#length >= FLUSH_BYTES) {
      void this.#writeQueued();
    } else if (!this.#writeScheduled) {
      this.#writeScheduled = true;
      setImmediate(() => {
        this.#writeScheduled = false;
        if (!this.#writing) void this.#writeQueued();
      });
    }
  }

  /** Writes until nothing is queued; a failure ends the log (never thrown). */
  async #writeQueued(): Promise<void> {
    this.#writing = true;
    try {
      while (this.#pending.length > 0 && !this.#failure) {
        let segment = this.#segments.at(-1);
        if (this.#fd === undefined || !segment || segment.size >= this.#segmentBytes) {
          segment = await this.#startSegment();
        }
        const fd = this.#fd as number;
        const batch = this.#take(this.#segmentBytes - segment.size);
        const size = batch.reduce((sum, data) => sum + data.byteLength, 0);
        const written = await this.#write(fd, batch);
        if (this.#failure) break;
        if (written < size) this.#pending.unshift(...remainder(batch, written));
        segment.size += written;
        this.#length += written;
        this.#trimTail();
        this.#changes.notify();
        this.#wakeDrainWaiters();
      }
    } catch (error) {
      this.#fail(error instanceof Error ? error : new Error(String(error)), true);
    } finally {
      this.#writing = false;
      this.#settle();
    }
  }

  /** Opens the next segment file, first dropping the oldest ones it would push past the bound. */
  async #startSegment(): Promise<Segment> {
    if (this.#fd !== undefined) {
      const fd = this.#fd;
      this.#fd = undefined;
      close(fd, () => {});
    }
    const slowest = this.#slowestReader() ?? Number.POSITIVE_INFINITY;
    while (this.#segments.length > 0 && this.#length - this.#firstKept + this.#segmentBytes > this.#retentionBytes) {
      // Never a segment a live reader has yet to finish: back-pressure (see append) keeps
      // this overshoot to about one append.
      const oldest = this.#segments[0] as Segment;
      if (oldest.offset + oldest.size > slowest) break;
      const dropped = this.#segments.shift() as Segment;
      this.#firstKept = this.#segments[0]?.offset ?? this.#length;
      unlink(this.#pathOf(dropped.offset), () => {});
    }
    const segment: Segment = { offset: this.#length, size: 0 };
    const path = this.#pathOf(segment.offset);
    const fd = await new Promise<number>((resolve, reject) =>
      open(path, "w", 0o600, (error, fd) => (error ? reject(error) : resolve(fd))),
    );
    if (this.#failure) {
      // Removed while the file was being created: it must not outlive the log.
      close(fd, () => unlink(path, () => {}));
      throw this.#failure;
    }
    this.#fd = fd;
    if (this.#segments.length === 0) this.#firstKept = segment.offset;
    this.#segments.push(segment);
    return segment;
  }

  /** Takes up to `limit` queued bytes off the front of the queue. */
  #take(limit: number): Uint8Array[] {
    const batch: Uint8Array[] = [];
    let size = 0;
    while (this.#pending.length > 0 && size < limit) {
      const data = this.#pending[0] as Uint8Array;
      if (size + data.byteLength <= limit) {
        batch.push(data);
        size += data.byteLength;
        this.#pending.shift();
      } else {
        batch.push(data.subarray(0, limit - size));
        this.#pending[0] = data.subarray(limit - size);
        size = limit;
      }
    }
    return batch;
  }

  /**
   * Drops in-memory chunks past the tail bound that are already on file (and, up to
   * READER_TAIL_BYTES, read by every live reader).
   */
  #trimTail(): void {
    if (this.#tailBytes <= MEMORY_TAIL_BYTES) return;
    const slowest = this.#slowestReader() ?? Number.POSITIVE_INFINITY;
    while (this.#tailBytes > MEMORY_TAIL_BYTES && this.#tail.length > 1) {
      const oldest = this.#tail[0] as Chunk;
      const end = oldest.offset + oldest.data.byteLength;
      if (end > this.#length) break;
      if (end > slowest && this.#tailBytes <= READER_TAIL_BYTES) break;
      this.#tail.shift();
      this.#tailBytes -= oldest.data.byteLength;
    }
  }

  #fail(error: Error, report: boolean): void {
    if (this.#failure) return;
    this.#failure = error;
    // What was not written never will be: the queue goes, and the log's length is final.
    this.#pending = [];
    this.#appended = this.#length;
    while ((this.#tail.at(-1)?.offset ?? -1) >= this.#length) {
      this.#tailBytes -= (this.#tail.pop() as Chunk).data.byteLength;
    }
    if (report) this.#onError?.(error);
    this.#changes.notify();
    this.#wakeDrainWaiters();
  }

  /** Once closing and idle: the file is closed, memory released and readers told the end. */
  #settle(): void {
    if (!this.#closing || this.#writing || (this.#pending.length > 0 && !this.#failure)) return;
    if (this.#closed) return;
    this.#closed = true;
    if (this.#fd !== undefined) close(this.#fd, () => {});
    this.#fd = undefined;
    this.#tail = [];
    this.#tailBytes = 0;
    this.#changes.notify();
    this.#wakeDrainWaiters();
  }

  #isDrained(): boolean {
    if (this.#failure !== undefined || this.#closed) return true;
    if (this.#appended - this.#length > LOW_WATER_BYTES) return false;
    const slowest = this.#slowestReader();
    return slowest === undefined || this.#appended - slowest < this.#retentionBytes - 3 * this.#segmentBytes;
  }

  #wakeDrainWaiters(): void {
    if (this.#drainWaiters.length === 0 || !this.#isDrained()) return;
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const wake of waiters) wake();
  }

  #pathOf(offset: number): string {
    return segmentPath(this.#base, offset);
  }

  /**
   * Chunks from `from` on, following new output, until the log is closed and drained.
   * A reader that is behind gets chunks of up to `maxRead` bytes: joined from the in-memory
   * tail, or read from the files when older than the tail. Throws OUT_OF_RANGE (with the
   * first kept offset) for dropped bytes, DATA_LOSS past the bytes stored when writing failed.
   */
  async *read(from: number, signal?: AbortSignal, maxRead = MAX_READ): AsyncGenerator<Chunk> {
    const reader = { at: from };
    this.#readers.add(reader);
    let file: { offset: number; fd: number } | undefined;
    /** The next piece of the file, being read while the reader's consumer takes this one. */
    let ahead: { at: number; fd: number; data: Promise<Uint8Array> } | undefined;
    try {
      for (;;) {
        const at = reader.at;
        signal?.throwIfAborted();
        if (at < this.#firstKept) throw outputDropped(at, this.#firstKept);
        if (at < this.#length) {
          const tailStart = this.#tail[0]?.offset ?? this.#length;
          if (at < tailStart) {
            const segment = this.#segmentAt(at);
            if (file?.offset !== segment.offset) {
              await ahead?.data.catch(() => {}); // never a read on a closed (or reused) descriptor
              ahead = undefined;
              if (file) close(file.fd, () => {});
              file = undefined;
              const fd = await openForReading(this.#pathOf(segment.offset));
              if (fd === undefined) {
                // Dropped while we were getting to it (the check above now says so), or deleted.
                if (at < this.#firstKept) continue;
                throw outputLost(at, this.#failure?.message ?? "its file is gone");
              }
              file = { offset: segment.offset, fd };
            }
            const end = Math.min(tailStart, this.#length, segment.offset + segment.size);
            const prefetched = ahead?.at === at && ahead.fd === file.fd ? ahead.data : undefined;
            await ahead?.data.catch(() => {});
            ahead = undefined;
            const data = await (prefetched ?? readAt(file.fd, at - segment.offset, Math.min(maxRead, end - at)));
            if (data.byteLength === 0) throw outputLost(at, "its file is shorter than recorded");
            // Read the next piece while this one is on its way: the disk (a thread-pool hop)
            // and the connection work at once. Written bytes never change, so it stays valid.
            const next = at + data.byteLength;
            const nextEnd = Math.min(
              this.#tail[0]?.offset ?? this.#length,
              this.#length,
              segment.offset + segment.size,
            );
            if (next < nextEnd) {
              const piece = readAt(file.fd, next - segment.offset, Math.min(maxRead, nextEnd - next));
              piece.catch(() => {}); // awaited when used, or before its descriptor is closed
              ahead = { at: next, fd: file.fd, data: piece };
            }
            yield { offset: at, data };
            this.#advance(reader, data.byteLength);
            continue;
          }
          const first = this.#chunkAt(at);
          if (this.#length - at <= first.data.byteLength) {
            yield first;
            this.#advance(reader, first.data.byteLength);
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
          this.#advance(reader, size);
          continue;
        }
        if (this.#failure) throw outputLost(this.#length, this.#failure.message);
        if (this.#closed) return;
        await this.#changes.wait(undefined, signal);
        // Let bytes that arrive in the same instant join this message: far fewer, larger
        // messages at high rates, for well under a millisecond of added latency.
        await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      await ahead?.data.catch(() => {});
      if (file) close(file.fd, () => {});
      this.#readers.delete(reader);
      this.#trimTail();
      this.#wakeDrainWaiters();
    }
  }

  /** A reader moved on: a process held back for it may go on. */
  #advance(reader: { at: number }, bytes: number): void {
    reader.at += bytes;
    this.#trimTail();
    this.#wakeDrainWaiters();
  }

  /** The kept segment holding `offset` (which is kept and written). */
  #segmentAt(offset: number): Segment {
    let lo = 0;
    let hi = this.#segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.#segments[mid] as Segment).offset <= offset) lo = mid;
      else hi = mid - 1;
    }
    return this.#segments[lo] as Segment;
  }

  /**
   * The rest of the in-memory chunk holding `offset` (which is within the tail and written), up
   * to the written length: a short write (a disk running full) can leave a chunk part written,
   * and a byte served before it is stored may never be (a resumed read would then ask past the
   * end of what the log keeps).
   */
  #chunkAt(offset: number): Chunk {
    let lo = 0;
    let hi = this.#tail.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.#tail[mid] as Chunk).offset <= offset) lo = mid;
      else hi = mid - 1;
    }
    const chunk = this.#tail[lo] as Chunk;
    return { offset, data: chunk.data.subarray(offset - chunk.offset, this.#length - chunk.offset) };
  }
}

/** The views of `batch` after its first `written` bytes. */
function remainder(batch: readonly Uint8Array[], written: number): Uint8Array[] {
  const rest: Uint8Array[] = [];
  let skip = written;
  for (const data of batch) {
    if (skip >= data.byteLength) skip -= data.byteLength;
    else {
      rest.push(data.subarray(skip));
      skip = 0;
    }
  }
  return rest;
}
