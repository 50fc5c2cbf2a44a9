/**
 * `StreamWriter`: a process's stdin. Writes are sent in order, each addressed by the byte
 * offset it starts at, so a write retried after a lost response is applied exactly once.
 */

import type { EffectRunner } from "./effect-runner.js";
import { FailedPreconditionError, InvalidError } from "./errors.js";
import { writeStdin } from "./process-ops.js";

/** Largest payload of one WriteStdin call; bigger writes are split. */
const MAX_WRITE_BYTES = 1 << 20;
const encoder = new TextEncoder();

export interface WriteOptions {
  /** Cancels the write (`AbortedError`); bytes already committed stay written. */
  readonly signal?: AbortSignal;
}

export class StreamWriter {
  readonly #runner: EffectRunner;
  readonly #sandboxId: string;
  readonly #processId: string;
  #offset = 0;
  #closed = false;
  /** Writes run one after another so offsets stay contiguous. */
  #tail: Promise<unknown> = Promise.resolve();

  /** @internal `offset`: bytes already written (a writer for a process another client started). */
  constructor(runner: EffectRunner, sandboxId: string, processId: string, offset = 0, closed = false) {
    this.#runner = runner;
    this.#sandboxId = sandboxId;
    this.#processId = processId;
    this.#offset = offset;
    this.#closed = closed;
  }

  /** Bytes written so far. */
  get bytesWritten(): number {
    return this.#offset;
  }

  write(data: string | Uint8Array, options: WriteOptions = {}): Promise<void> {
    if (typeof data !== "string" && !(data instanceof Uint8Array)) {
      return Promise.reject(new InvalidError("stdin data must be a string or a Uint8Array"));
    }
    if (this.#closed) return Promise.reject(new FailedPreconditionError("stdin is already closed"));
    const bytes = typeof data === "string" ? encoder.encode(data) : data;
    return this.#enqueue(async () => {
      for (let at = 0; at < bytes.byteLength; at += MAX_WRITE_BYTES) {
        const part = bytes.subarray(at, at + MAX_WRITE_BYTES);
        await this.#send(part, false, options.signal);
      }
    });
  }

  /** Ends the input: the process reads end-of-file after the bytes already written. */
  close(options: WriteOptions = {}): Promise<void> {
    if (this.#closed) return this.#tail.then(() => undefined);
    this.#closed = true;
    return this.#enqueue(() => this.#send(new Uint8Array(0), true, options.signal));
  }

  /** A WHATWG `WritableStream`; closing it closes stdin. */
  writableStream(): WritableStream<string | Uint8Array> {
    return new WritableStream({
      write: (chunk) => this.write(chunk),
      close: () => this.close(),
    });
  }

  async #send(data: Uint8Array, eof: boolean, signal: AbortSignal | undefined): Promise<void> {
    const offset = this.#offset;
    await this.#runner.run(writeStdin(this.#sandboxId, this.#processId, offset, data, eof), signal);
    this.#offset = offset + data.byteLength;
  }

  #enqueue(task: () => Promise<void>): Promise<void> {
    const run = this.#tail.then(task);
    this.#tail = run.catch(() => undefined);
    return run;
  }
}
