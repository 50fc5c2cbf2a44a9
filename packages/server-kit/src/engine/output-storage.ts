/**
 * The output seam: where a process's stdout and stderr are kept, addressed by offset. The
 * server keeps them in files under its data dir; the fake keeps them in memory
 * (`memoryOutputStorage`). The engine decides what goes in, the storage only keeps it.
 */
import type { OutputLogLike } from "../output-reads.js";

/** One process stream's kept output. */
export interface ProcessOutputLog extends OutputLogLike {
  /** The oldest offset still kept (0 until the retention bound drops output). */
  readonly firstKeptOffset: number;
  /** Bytes appended so far, stored or not: the stream's length once storing has caught up. */
  readonly appendedLength: number;
  /**
   * Queues `data`; false when too much waits to be stored, and the producer should pause
   * until `drained()`.
   */
  append(data: Uint8Array): boolean;
  /** Resolves once few bytes wait to be stored again (or the log has ended). */
  drained(): Promise<void>;
  /** Resolves once everything appended so far is stored (or storing failed). */
  written(): Promise<void>;
  /** No more appends; readers see the end once what is queued is stored. */
  close(): void;
  /** Ends the log and frees what it holds (the process's retention ran out). */
  remove(): void;
  /** Bytes from `from` on, following new output until the log ends; `maxRead` bounds a chunk. */
  read(
    from: number,
    signal?: AbortSignal,
    maxRead?: number,
  ): AsyncIterable<{ readonly offset: number; readonly data: Uint8Array }>;
}

export type OutputStreamName = "stdout" | "stderr";

export interface OutputLogOptions {
  /** Most bytes kept; older output is dropped. */
  readonly retentionBytes?: number | undefined;
  /** Called once if storing fails (the log has then ended; nothing is thrown). */
  readonly onError?: (error: Error) => void;
}

export interface OutputStorage {
  /** A new, empty log for one stream of a process. */
  open(sandboxId: string, processId: string, stream: OutputStreamName, options: OutputLogOptions): ProcessOutputLog;
  /** A finished log as an earlier engine left it (empty when nothing was kept). */
  restore(sandboxId: string, processId: string, stream: OutputStreamName): ProcessOutputLog;
}
