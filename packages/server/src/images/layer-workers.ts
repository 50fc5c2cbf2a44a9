/**
 * The layer store's worker threads (layer-worker.ts, whose header has the protocol): each
 * layer job runs in one, its blob's bytes sent to it as they come, at most a few MiB ahead of
 * what it has read. Workers start with the first job (or {@link LayerWorkers.warm}), take
 * jobs the fewest first, and stop after a while without any; none keeps the process alive.
 *
 * A job ends only when its worker says so, or stops: until then the worker may still write in
 * the job's dirs, so the store waits for that before it removes them.
 *
 * A worker that stops with jobs in it (its heap limit reached, a bug) fails them with
 * {@link WorkerStopped}, which says whether the job shared the worker with another: then the
 * job may have been stopped for another's fault, and its owner runs it again `alone`, in a
 * worker of its own that takes no other job, where a stop is the job's own doing.
 */
import { MessageChannel, Worker } from "node:worker_threads";
import type { LayerJob } from "./layer-job.js";
import type { FromWorker, JobFailure, JobMessage, ToWorker } from "./layer-worker.js";
import { storeError } from "./store-errors.js";

/** How far the bytes sent may run ahead of those a job has read. */
const MAX_AHEAD = 2 * 1024 * 1024;
/**
 * A worker without a job stops after this long. A new worker costs ~50 ms of CPU to start and
 * runs its first layers at about half speed (V8 compiles its code as it goes): pulls that
 * come in a burst find it running.
 */
const IDLE_MS = 60_000;

/**
 * The worker's script. From the sources (the tests run them as they are), Node strips the
 * types, and a resolve hook maps the sources' "./x.js" imports to "./x.ts".
 */
const FROM_SOURCES = import.meta.url.endsWith(".ts");
const SCRIPT = new URL(FROM_SOURCES ? "./layer-worker.ts" : "./layer-worker.js", import.meta.url);
const SOURCE_HOOK = `import { registerHooks } from "node:module";
registerHooks({
  resolve(specifier, context, next) {
    if (/^\\.\\.?\\//.test(specifier) && specifier.endsWith(".js") && context.parentURL?.endsWith(".ts")) {
      try { return next(specifier, context); } catch { return next(specifier.slice(0, -3) + ".ts", context); }
    }
    return next(specifier, context);
  },
});`;

/** The default heap limit of a worker (its old generation, in MiB). */
export const DEFAULT_WORKER_HEAP_MIB = 1024;

interface RunningJob {
  /** Called with why the worker stopped. */
  readonly end: (stopped: WorkerStopped) => void;
  /** Whether another job ran in its worker while it did. */
  shared: boolean;
}

interface Slot {
  readonly worker: Worker;
  /** A worker of one job's own: no other job goes to it, and it stops with its job. */
  readonly alone: boolean;
  readonly jobs: Set<RunningJob>;
  idle?: NodeJS.Timeout | undefined;
}

/** A job's worker stopped before the job ended. */
export class WorkerStopped extends Error {
  constructor(
    message: string,
    /** Whether another job ran in the worker while this one did (the stop may be its fault). */
    readonly shared: boolean,
    /** Whether the worker was stopped by `close`. */
    readonly closing: boolean,
    /** Whether the worker reached its heap limit. */
    readonly outOfMemory: boolean,
    cause: unknown,
  ) {
    super(message, { cause });
    this.name = "WorkerStopped";
  }
}

export interface JobOptions {
  /** Uncompressed bytes so far. */
  readonly onUnpackedBytes?: ((total: number) => void) | undefined;
  /**
   * Ends a read of the source that is under way (an aborted download), when the job ended
   * before its source did: the source is closed only once no read is pending.
   */
  readonly stopSource?: (() => void) | undefined;
  /** Runs the job in a worker of its own, which takes no other job and stops when it ends. */
  readonly alone?: boolean | undefined;
}

type Outcome = { readonly sizeBytes: number } | { readonly failure: JobFailure } | { readonly stopped: WorkerStopped };

export class LayerWorkers {
  readonly #max: number;
  readonly #heapMiB: number;
  /** The shared workers (those of one job's own are not here). */
  readonly #slots = new Set<Slot>();
  readonly #alone = new Set<Slot>();
  #closed = false;

  /** At most `max` shared workers, each with a heap of at most `heapMiB` (default {@link DEFAULT_WORKER_HEAP_MIB}). */
  constructor(max: number, heapMiB = DEFAULT_WORKER_HEAP_MIB) {
    this.#max = Math.max(1, max);
    this.#heapMiB = heapMiB;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Starts a worker if none runs, so that the first job does not wait for one. */
  warm(): void {
    if (this.#slots.size === 0 && !this.#closed) this.#start(false);
  }

  /**
   * Runs `job` in a worker with the bytes `source` reads; resolves with the layer's size when
   * both digests checked out, rejects with the job's error (the source's own, as it threw
   * it, when that is what ended the job). `source` is not closed: its owner closes it.
   */
  async run(
    job: LayerJob,
    source: AsyncIterator<Uint8Array>,
    options: JobOptions = {},
  ): Promise<{ sizeBytes: number }> {
    if (this.#closed) throw new Error("the layer store is closed");
    const slot = options.alone ? this.#start(true) : this.#slotForJob();
    const { port1: port, port2 } = new MessageChannel();
    let ahead = 0;
    let wakeSender: (() => void) | undefined;
    let outcome: Outcome | undefined;
    let settle!: (outcome: Outcome) => void;
    const ended = new Promise<Outcome>((resolve) => {
      settle = (value) => {
        if (outcome !== undefined) return;
        outcome = value;
        port.close();
        wakeSender?.();
        resolve(value);
      };
    });
    port.on("message", (message: FromWorker) => {
      switch (message.type) {
        case "taken":
          ahead -= message.bytes;
          wakeSender?.();
          break;
        case "unpacked":
          if (outcome === undefined) options.onUnpackedBytes?.(message.bytes);
          break;
        case "done":
          settle({ sizeBytes: message.sizeBytes });
          break;
        case "failed":
          settle({ failure: message.failure });
          break;
      }
    });
    const running: RunningJob = { end: (stopped) => settle({ stopped }), shared: slot.jobs.size > 0 };
    for (const other of slot.jobs) other.shared = true;
    slot.jobs.add(running);
    slot.worker.postMessage({ job, port: port2 } satisfies JobMessage, [port2]);
    const send = (message: ToWorker, transfer: ArrayBuffer[] = []) => {
      if (outcome === undefined) port.postMessage(message, transfer);
    };
    let sourceError: { error: unknown } | undefined;
    try {
      while (outcome === undefined) {
        if (ahead >= MAX_AHEAD) {
          await new Promise<void>((resolve) => {
            wakeSender = resolve;
          });
          wakeSender = undefined;
          continue;
        }
        const reading = source.next();
        const read = await Promise.race([
          reading.then(
            (result) => ({ result }),
            (error: unknown) => ({ error }),
          ),
          ended.then(() => undefined),
        ]);
        if (read === undefined) {
          // The job ended first (a bad layer, a full disk): end the read before the source is closed.
          options.stopSource?.();
          await reading.catch(() => {});
          break;
        }
        if ("error" in read) {
          sourceError = read;
          send({ type: "source-failed" });
          break;
        }
        if (read.result.done) {
          send({ type: "end" });
          break;
        }
        const chunk = owned(read.result.value);
        ahead += chunk.byteLength;
        send({ type: "bytes", chunk }, [chunk.buffer as ArrayBuffer]);
      }
      const result = await ended;
      if ("sizeBytes" in result) return { sizeBytes: result.sizeBytes };
      if ("stopped" in result) throw result.stopped;
      throw errorOf(result.failure, sourceError);
    } finally {
      slot.jobs.delete(running);
      if (slot.alone) void slot.worker.terminate();
      else this.#idleCheck(slot);
    }
  }

  /** Stops every worker (their jobs fail). */
  close(): void {
    this.#closed = true;
    for (const slot of [...this.#slots, ...this.#alone]) void slot.worker.terminate();
  }

  #slotForJob(): Slot {
    let best: Slot | undefined;
    for (const slot of this.#slots) if (best === undefined || slot.jobs.size < best.jobs.size) best = slot;
    const slot = best === undefined || (best.jobs.size > 0 && this.#slots.size < this.#max) ? this.#start(false) : best;
    clearTimeout(slot.idle);
    slot.idle = undefined;
    return slot;
  }

  #start(alone: boolean): Slot {
    const worker = new Worker(SCRIPT, {
      execArgv: FROM_SOURCES ? ["--import", `data:text/javascript,${encodeURIComponent(SOURCE_HOOK)}`] : [],
      // The unpacker's record of a layer at its limits (1,000,000 entries, 64 MiB of names)
      // takes ~350 MB of heap: room for that (by default), and a bound on what a worker may hold.
      resourceLimits: { maxOldGenerationSizeMb: this.#heapMiB },
    });
    worker.unref();
    const slot: Slot = { worker, alone, jobs: new Set() };
    (alone ? this.#alone : this.#slots).add(slot);
    let why: Error | undefined;
    worker.on("error", (error) => {
      why ??= error;
    });
    worker.on("exit", (code) => {
      this.#slots.delete(slot);
      this.#alone.delete(slot);
      clearTimeout(slot.idle);
      const outOfMemory = (why as NodeJS.ErrnoException | undefined)?.code === "ERR_WORKER_OUT_OF_MEMORY";
      const message = `a layer worker stopped (exit code ${code})${why ? `: ${why.message}` : ""}`;
      for (const job of slot.jobs) job.end(new WorkerStopped(message, job.shared, this.#closed, outOfMemory, why));
    });
    if (!alone) this.#idleCheck(slot);
    return slot;
  }

  #idleCheck(slot: Slot): void {
    if (slot.jobs.size > 0 || !this.#slots.has(slot)) return;
    clearTimeout(slot.idle);
    slot.idle = setTimeout(() => {
      if (slot.jobs.size > 0) return;
      this.#slots.delete(slot); // no job goes to a worker that is stopping
      void slot.worker.terminate();
    }, IDLE_MS);
    slot.idle.unref();
  }
}

/**
 * `chunk` as bytes this side may hand over (transfer): a chunk that is its whole buffer is its
 * reader's to give (a fetch body's chunks, a file stream's reads: the sources here never
 * reuse one); a view into a larger buffer is copied, never the buffer under it detached.
 */
function owned(chunk: Uint8Array): Uint8Array {
  const whole = chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength;
  return whole && chunk.buffer instanceof ArrayBuffer ? chunk : new Uint8Array(chunk);
}

/** The error a job failed with, on this side: the source's own error when that is what it was. */
function errorOf(failure: JobFailure, sourceError: { error: unknown } | undefined): unknown {
  if ("source" in failure) return sourceError?.error ?? new Error("a layer's source failed");
  if ("kind" in failure) return storeError(failure.kind, failure.message);
  const error = new Error(failure.message) as NodeJS.ErrnoException;
  if (failure.code !== undefined) error.code = failure.code;
  if (failure.stack !== undefined) error.stack = failure.stack;
  return error;
}
