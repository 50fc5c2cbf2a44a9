/**
 * A layer worker: a worker thread that runs layer jobs (layer-job.ts) for the layer store, so
 * that gunzip's output, the two SHA-256 passes, the tar parser and the file writes of a pull
 * happen off the server's event loop, in an isolate of their own (whose garbage collections
 * are those of a small heap, not of the server's). Several jobs may run at once in one worker.
 *
 * The protocol (layer-workers.ts is the other side): the store posts a {@link JobMessage} on
 * the worker's parent port, with a port of the job's own. On it the store sends the blob's
 * bytes (transferred), then "end", or "source-failed" when the download broke off or the pull
 * was aborted; the worker answers "taken" for the bytes it read (the store sends at most a few
 * MiB ahead), "unpacked" as the layer grows, then "done" or "failed", once. The worker never
 * removes nor renames the job's dirs: the store does, when the job is over.
 */
import { type MessagePort, parentPort } from "node:worker_threads";
import type { ImageStoreErrorKind } from "@sbx/server-kit/image-store";
import { type LayerJob, unpackCheckedLayer } from "./layer-job.js";
import { ImageStoreError } from "./store-errors.js";

/** From the store, on the worker's parent port. */
export interface JobMessage {
  readonly job: LayerJob;
  readonly port: MessagePort;
}

/** From the store, on a job's port. */
export type ToWorker =
  | { readonly type: "bytes"; readonly chunk: Uint8Array }
  | { readonly type: "end" }
  | { readonly type: "source-failed" };

/** From the worker, on a job's port. */
export type FromWorker =
  | { readonly type: "taken"; readonly bytes: number }
  | { readonly type: "unpacked"; readonly bytes: number }
  | { readonly type: "done"; readonly sizeBytes: number }
  | { readonly type: "failed"; readonly failure: JobFailure };

/** Why a job failed, as a message can carry it. */
export type JobFailure =
  /** The source's own failure, which the store has (a broken download, an abort). */
  | { readonly source: true }
  | { readonly kind: ImageStoreErrorKind; readonly message: string }
  /** Anything else: a file system error (its code: ENOSPC is a full disk) or a bug. */
  | { readonly message: string; readonly code?: string | undefined; readonly stack?: string | undefined };

/** What a job's source throws once the store says its source failed. */
class SourceFailed extends Error {}

/** Bytes read are acknowledged in batches of this many (or when none are left to read). */
const ACK_BYTES = 512 * 1024;

/** A job's blob, as the store sends it on the job's port. */
class PortSource implements AsyncIterator<Uint8Array> {
  readonly #port: MessagePort;
  readonly #queue: Uint8Array[] = [];
  #ended = false;
  #failed = false;
  /** Bytes read and not yet acknowledged ("taken"). */
  #unacked = 0;
  #wake: (() => void) | undefined;

  constructor(port: MessagePort) {
    this.#port = port;
    port.on("message", (message: ToWorker) => {
      if (message.type === "bytes") this.#queue.push(message.chunk);
      else if (message.type === "end") this.#ended = true;
      else this.#failed = true;
      this.#wake?.();
    });
  }

  async next(): Promise<IteratorResult<Uint8Array>> {
    for (;;) {
      // A failure stops the job at once, whatever bytes are still queued.
      if (this.#failed) throw new SourceFailed("the layer's source failed");
      const chunk = this.#queue.shift();
      if (chunk !== undefined) {
        this.#unacked += chunk.byteLength;
        if (this.#unacked >= ACK_BYTES || this.#queue.length === 0) this.#ack();
        return { done: false, value: chunk };
      }
      if (this.#ended) return { done: true, value: undefined };
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      this.#wake = undefined;
    }
  }

  #ack(): void {
    this.#port.postMessage({ type: "taken", bytes: this.#unacked } satisfies FromWorker);
    this.#unacked = 0;
  }
}

function failureOf(error: unknown): JobFailure {
  if (error instanceof SourceFailed) return { source: true };
  if (error instanceof ImageStoreError) return { kind: error.kind, message: error.message };
  const { message, code, stack } = (error ?? {}) as Partial<NodeJS.ErrnoException>;
  return { message: message ?? String(error), code, stack };
}

async function runJob({ job, port }: JobMessage): Promise<void> {
  const post = (message: FromWorker) => port.postMessage(message);
  try {
    const { sizeBytes } = await unpackCheckedLayer(new PortSource(port), job, (bytes) =>
      post({ type: "unpacked", bytes }),
    );
    post({ type: "done", sizeBytes });
  } catch (error) {
    post({ type: "failed", failure: failureOf(error) });
  }
  // The store closes the port once it has the answer.
}

parentPort?.on("message", (message: JobMessage) => {
  void runJob(message);
});
