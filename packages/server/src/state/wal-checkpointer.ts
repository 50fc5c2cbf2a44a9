/**
 * When the state store's write-ahead log goes into the database. SQLite does it by itself
 * after a commit that takes the log past 1,000 pages, in the committing call: on the server's
 * event loop, a stall of the copy and two fsyncs (5-6 ms on this VM's disk, every ~400 process
 * records; an exec's round trip is ~3 ms). The store turns that off and asks this instead: a
 * worker thread with a connection of its own checkpoints (PASSIVE: it never holds up the
 * server's writes) half a second after writes, started when first needed and stopped after a
 * minute without any. Should the worker fail, the checkpoint runs here, as SQLite would have.
 */
import { Worker } from "node:worker_threads";

const FROM_SOURCES = import.meta.url.endsWith(".ts");
const SCRIPT = new URL(FROM_SOURCES ? "./wal-checkpoint-worker.ts" : "./wal-checkpoint-worker.js", import.meta.url);

export interface WalCheckpointerOptions {
  /** The database's file. */
  readonly path: string;
  /** Checkpoints here, on the event loop (what SQLite would have done), when the worker cannot. */
  readonly checkpointHere: () => void;
  /** How long after a write its checkpoint waits (more writes meanwhile join it). */
  readonly delayMs?: number;
  /** How long the worker is kept without a checkpoint to do. */
  readonly idleMs?: number;
}

export class WalCheckpointer {
  readonly #options: WalCheckpointerOptions;
  #worker: Worker | undefined;
  #timer: NodeJS.Timeout | undefined;
  #idle: NodeJS.Timeout | undefined;
  /** A checkpoint is under way in the worker. */
  #running = false;
  /** Writes since the checkpoint under way began. */
  #dirty = false;
  #closed = false;
  /** A worker failed at its checkpoint: from then on they are done here. */
  #workerFailed = false;
  /** Checkpoints done (by the worker or here); for tests. */
  done = 0;

  constructor(options: WalCheckpointerOptions) {
    this.#options = options;
  }

  /** A write was committed: its pages go into the database soon. */
  wrote(): void {
    if (this.#closed) return;
    this.#dirty = true;
    if (this.#running || this.#timer) return;
    this.#timer = setTimeout(() => this.#run(), this.#options.delayMs ?? 500);
    this.#timer.unref();
  }

  /** Stops the worker (the store checkpoints for the last time itself as it closes). */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#idle);
    this.#timer = undefined;
    const worker = this.#worker;
    this.#worker = undefined;
    void worker?.terminate();
  }

  #run(): void {
    this.#timer = undefined;
    if (this.#closed) return;
    this.#dirty = false;
    clearTimeout(this.#idle);
    const worker = this.#workerFailed ? undefined : (this.#worker ?? this.#start());
    if (!worker) {
      this.#here();
      this.#next(undefined);
      return;
    }
    this.#running = true;
    worker.postMessage("checkpoint");
  }

  #start(): Worker | undefined {
    let worker: Worker;
    try {
      worker = new Worker(SCRIPT, { workerData: { path: this.#options.path } });
    } catch {
      this.#workerFailed = true;
      return undefined;
    }
    worker.unref();
    worker.on("message", (answer: { error?: string }) => {
      this.#running = false;
      if (answer.error) {
        this.#workerFailed = true;
        this.#stop(worker);
        this.#here();
      } else this.done++;
      this.#next(worker);
    });
    // Gone (failed to start, or crashed) with a checkpoint asked for: it is done here.
    worker.on("error", () => {});
    worker.on("exit", () => {
      if (this.#worker !== worker) return;
      this.#worker = undefined;
      if (this.#running) {
        this.#running = false;
        this.#workerFailed = true;
        this.#here();
        this.#next(undefined);
      }
    });
    this.#worker = worker;
    return worker;
  }

  /** After a checkpoint: another if writes came meanwhile, else the worker's idle countdown. */
  #next(worker: Worker | undefined): void {
    if (this.#closed) return;
    if (this.#dirty) {
      this.#dirty = false;
      this.wrote();
      return;
    }
    if (!worker || this.#worker !== worker) return;
    clearTimeout(this.#idle);
    this.#idle = setTimeout(() => this.#stop(worker), this.#options.idleMs ?? 60_000);
    this.#idle.unref();
  }

  #stop(worker: Worker): void {
    if (this.#worker === worker) this.#worker = undefined;
    void worker.terminate();
  }

  #here(): void {
    try {
      this.#options.checkpointHere();
      this.done++;
    } catch {
      // (SQLite's own checkpoint would have failed the same way: the log waits for the next.)
    }
  }
}
