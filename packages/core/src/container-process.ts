/**
 * `ContainerProcess`: a process started with `sandbox.exec`. Its streams, stdin, exit code
 * and signals. Modelled on Modal's ContainerProcess.
 */
import type { Process as ProcessInfo } from "@sbx/proto";
import type { EffectRunner } from "./effect-runner.js";
import { getProcess, resizePty, type SignalName, signalProcess, waitProcess } from "./process-ops.js";
import { knownReturncode, returncodeOf, sandboxEndedError } from "./returncode.js";
import { StreamWriter } from "./stdin-writer.js";
import { type StreamMode, StreamReader } from "./stream-reader.js";
import { validateDuration } from "./validation.js";

export interface WaitOptions {
  /** Cancels the wait (`AbortedError`); what it waits for keeps running. */
  readonly signal?: AbortSignal;
  /** Give up (with `TimeoutError`) after this long; the process keeps running. */
  readonly timeoutMs?: number;
}

export interface SignalOptions {
  /** Cancels the call (`AbortedError`). */
  readonly signal?: AbortSignal;
}

export interface ProcessStreams {
  readonly stdout: boolean;
  readonly stderr: boolean;
}

export class ContainerProcess<T extends string | Uint8Array = string> {
  readonly sandboxId: string;
  /** The client-chosen id of this process within its sandbox. */
  readonly processId: string;
  readonly stdout: StreamReader<T>;
  readonly stderr: StreamReader<T>;
  readonly stdin: StreamWriter;
  readonly #runner: EffectRunner;
  #info: ProcessInfo;

  /** @internal */
  constructor(runner: EffectRunner, info: ProcessInfo, mode: StreamMode, piped: ProcessStreams) {
    this.#runner = runner;
    this.#info = info;
    this.sandboxId = info.sandboxId;
    this.processId = info.processId;
    const source = (stream: "stdout" | "stderr") => ({ sandboxId: info.sandboxId, processId: info.processId, stream });
    this.stdout = new StreamReader<T>(runner, piped.stdout ? source("stdout") : undefined, mode);
    this.stderr = new StreamReader<T>(runner, piped.stderr ? source("stderr") : undefined, mode);
    this.stdin = new StreamWriter(runner, info.sandboxId, info.processId);
  }

  /** The process id inside the sandbox, when the server reports one. */
  get pid(): number | undefined {
    return this.#info.pid || undefined;
  }

  /** The exit code once known: 124 on exec timeout, 128 + n after signal n; null while running. */
  get returncode(): number | null {
    return this.#info.running ? null : returncodeOf(this.#info.exitStatus);
  }

  /** Waits for the process to exit and resolves its return code. */
  async wait(options: WaitOptions = {}): Promise<number> {
    const timeoutMs = options.timeoutMs === undefined ? undefined : validateDuration(options.timeoutMs, "timeoutMs");
    this.#info = await this.#runner.run(waitProcess(this.sandboxId, this.processId, timeoutMs), options.signal);
    if (this.#info.sandboxEnded) {
      throw sandboxEndedError(this.sandboxId, this.#info.sandboxExitStatus, `process ${this.processId}`);
    }
    return knownReturncode(this.#info.exitStatus, `process ${this.processId}`);
  }

  /** The return code if the process has exited, else null (does not wait). */
  async poll(options: SignalOptions = {}): Promise<number | null> {
    if (this.returncode !== null) return this.returncode;
    this.#info = await this.#runner.run(getProcess(this.sandboxId, this.processId), options.signal);
    return this.returncode;
  }

  /** Changes the terminal size of a process started with `pty: true`. */
  async resize(rows: number, cols: number, options: SignalOptions = {}): Promise<void> {
    await this.#runner.run(resizePty(this.sandboxId, this.processId, rows, cols), options.signal);
  }

  /** Sends a signal (default SIGKILL). A process that already exited is left as it is. */
  async kill(signal: SignalName | number = "SIGKILL", options: SignalOptions = {}): Promise<void> {
    this.#info = await this.#runner.run(signalProcess(this.sandboxId, this.processId, signal), options.signal);
  }
}
