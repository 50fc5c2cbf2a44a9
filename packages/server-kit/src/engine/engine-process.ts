/**
 * One process of a sandbox as the engine sees it: its record, its kept stdout and stderr,
 * stdin by offset, its exec timeout and who is attached (idle timeout, kill-on-disconnect,
 * TTL). The runtime driver runs it; this decides what its bytes and its end mean.
 */
import { create } from "@bufbuild/protobuf";
import { type ExitStatus, type Process, ProcessSchema, type ProcessSpec, StdioMode } from "@sbx/proto";
import { CommandLifecycle } from "../command-lifecycle.js";
import { Notifier } from "../notifier.js";
import type { EngineLogger } from "./engine-logger.js";
import { exited, fromRuntimeExit, timedOut } from "./exit-status.js";
import type { OutputStorage, ProcessOutputLog } from "./output-storage.js";
import type { RuntimeProcess, RuntimeSandbox } from "./runtime-driver.js";
import { type Timer, unrefTimer } from "./timers.js";

/** How long a timed-out process may take to be reported gone (its output drained) after the kill. */
const KILL_GRACE_MS = 10_000;
/** How long a stdin write waits for the process's pipe to take the bytes. */
const STDIN_BACKPRESSURE_MS = 5_000;

/** What a process needs from the sandbox it runs in (an EngineSandbox). */
export interface ProcessHost {
  readonly info: { readonly id: string };
  readonly engine: {
    readonly outputs: OutputStorage;
    readonly logger: EngineLogger;
    readonly options: { readonly outputRetentionBytes?: number | undefined };
  };
  /** Activity: postpones the sandbox's idle timeout. */
  touch(): void;
  persistProcess(process: EngineProcess): void;
  /** Like persistProcess, for what a restart needs only eventually (the pid). */
  persistProcessSoon(process: EngineProcess): void;
  processEnded(process: EngineProcess): void;
  forgetProcess(process: EngineProcess): void;
}

export class EngineProcess {
  readonly stdout: ProcessOutputLog;
  readonly stderr: ProcessOutputLog;
  readonly ended = new Notifier();
  /** Who is attached, idle timeout, kill-on-disconnect and TTL. */
  readonly lifecycle: CommandLifecycle;
  #runtime: RuntimeProcess | undefined;
  #timer: Timer | undefined;
  /** Set when the exec timeout killed the process: its status once the runtime reports it gone. */
  #timedOut = false;
  #stdinClosed: boolean;
  /** The runtime reported the exit; the record ends once the output is stored. */
  #exited = false;
  /** Whether the store has its record (set by the sandbox's persistProcess). */
  recorded: boolean;

  constructor(
    readonly sandbox: ProcessHost,
    readonly info: Process,
    restored = false,
  ) {
    const { engine } = sandbox;
    const log = (stream: "stdout" | "stderr") => {
      if (restored) return engine.outputs.restore(sandbox.info.id, info.processId, stream);
      return engine.outputs.open(sandbox.info.id, info.processId, stream, {
        retentionBytes: engine.options.outputRetentionBytes,
        // The stream ends with DATA_LOSS for its readers; the engine and the process go on.
        onError: (error) =>
          engine.logger.error("storing output failed; the rest of this stream is lost", {
            sandbox: sandbox.info.id,
            process: info.processId,
            stream,
            error: error.message,
          }),
      });
    };
    this.stdout = log("stdout");
    this.stderr = log("stderr");
    this.#stdinClosed = info.stdinClosed;
    this.recorded = restored;
    const spec = this.spec;
    this.lifecycle = new CommandLifecycle({
      idleTimeoutMs: spec.idleTimeoutMs === undefined ? undefined : Number(spec.idleTimeoutMs),
      killOnDisconnect: spec.killOnDisconnect,
      ttlMs: spec.ttlMs === undefined ? undefined : Number(spec.ttlMs),
      kill: (reason) => {
        engine.logger.info("killing a command nobody is attached to", { id: info.processId, reason });
        this.signal(9);
      },
      expire: () => sandbox.forgetProcess(this),
    });
    if (restored) this.lifecycle.ended();
  }

  static create(sandbox: ProcessHost, processId: string, spec: ProcessSpec): EngineProcess {
    return new EngineProcess(
      sandbox,
      create(ProcessSchema, { sandboxId: sandbox.info.id, processId, spec, running: true }),
    );
  }

  get spec(): ProcessSpec {
    return this.info.spec as ProcessSpec;
  }

  get running(): boolean {
    return this.info.running;
  }

  /** Deletes the retained output (the process's TTL ran out). */
  removeOutput(): void {
    this.stdout.remove();
    this.stderr.remove();
  }

  async start(runtime: RuntimeSandbox): Promise<void> {
    const spec = this.spec;
    const timeoutMs = Number(spec.timeoutMs);
    if (timeoutMs > 0) this.#timer = unrefTimer(() => this.#timeout(), timeoutMs);
    let rt: RuntimeProcess;
    try {
      const starting = runtime.exec({
        processId: this.info.processId,
        argv: spec.argv,
        env: spec.env,
        workdir: spec.workdir || undefined,
        pty: spec.pty,
        ptySize: spec.ptySize ? { rows: spec.ptySize.rows, cols: spec.ptySize.cols } : undefined,
        mergeStderr: spec.stderr === StdioMode.STDOUT,
      });
      // Not recorded yet (see addProcess's startsNow): written while the runtime starts it, and
      // so before anyone hears of the start.
      if (!this.recorded) this.sandbox.persistProcess(this);
      rt = await starting;
    } catch (error) {
      this.stderr.append(new TextEncoder().encode(`sbx: ${(error as Error).message}\n`));
      this.finish(exited(127));
      throw error;
    }
    this.#runtime = rt;
    this.info.pid = rt.pid;
    // Back-pressure: while a log has too much waiting to be stored, the process's output is
    // not read, so its pipe fills and it blocks on write (slowed to the storage's speed).
    const full = new Set<ProcessOutputLog>();
    const append = (log: ProcessOutputLog, chunk: Uint8Array) => {
      const room = log.append(chunk);
      if (log === this.stdout) this.info.stdoutLength = BigInt(log.appendedLength);
      else this.info.stderrLength = BigInt(log.appendedLength);
      if (room || full.has(log)) return;
      if (full.size === 0) rt.pauseOutput();
      full.add(log);
      void log.drained().then(() => {
        full.delete(log);
        if (full.size === 0) rt.resumeOutput();
      });
    };
    if (this.#timedOut) rt.signal(9); // the timeout fired while it was starting
    const out = (chunk: Uint8Array) => {
      if (spec.stdout !== StdioMode.IGNORE) append(this.stdout, chunk);
    };
    rt.onStdout(out);
    rt.onStderr((chunk) => {
      if (spec.stderr === StdioMode.STDOUT) out(chunk);
      else if (spec.stderr !== StdioMode.IGNORE) append(this.stderr, chunk);
    });
    if (this.#stdinClosed) void rt.closeStdin();
    // Finished once its output is stored too, so a reader told it ended finds all of it.
    void rt.exit.then(async (exit) => {
      this.#exited = true;
      await Promise.all([this.stdout.written(), this.stderr.written()]);
      this.finish(this.#timedOut ? timedOut() : fromRuntimeExit(exit));
      // Gone, its output read: nothing is sent to it any more (signals, stdin and resizes stop
      // at the finish), and the record, kept until its TTL, need not keep its pipes' streams.
      this.#runtime = undefined;
    });
    // The record was written before the start; its pid can wait (see persistProcessSoon).
    this.sandbox.persistProcessSoon(this);
  }

  /**
   * Kills the process; it ends (as timed out) when the runtime reports it gone, so the output
   * it wrote before the kill is all kept. If that never comes, it ends anyway.
   */
  #timeout(): void {
    if (!this.running || this.#exited || this.#timedOut) return;
    this.#timedOut = true;
    this.#runtime?.signal(9); // still starting: start() kills it once it has a runtime process
    this.#timer = unrefTimer(() => this.finish(timedOut()), KILL_GRACE_MS);
  }

  /** Accepts stdin bytes at `offset`; bytes already committed are skipped. */
  async writeStdin(offset: number, data: Uint8Array, eof: boolean): Promise<{ committed: number } | { error: string }> {
    const committed = Number(this.info.stdinLength);
    if (offset > committed) return { error: `stdin gap: write at byte ${offset} but only ${committed} written` };
    const fresh = data.subarray(Math.min(data.byteLength, committed - offset));
    if (this.#stdinClosed) return fresh.byteLength > 0 ? { error: "stdin is closed" } : { committed };
    this.info.stdinLength = BigInt(committed + fresh.byteLength);
    const rt = this.#runtime;
    const flushed = fresh.byteLength > 0 && this.running && rt ? rt.writeStdin(fresh) : Promise.resolve();
    if (eof) {
      this.#stdinClosed = true;
      this.info.stdinClosed = true;
      if (rt) void flushed.then(() => rt.closeStdin());
    }
    // Wait (briefly) until the pipe took the bytes: back-pressure for fast writers.
    let timer: Timer | undefined;
    await Promise.race([flushed, new Promise((r) => (timer = unrefTimer(() => r(undefined), STDIN_BACKPRESSURE_MS)))]);
    clearTimeout(timer);
    return { committed: Number(this.info.stdinLength) };
  }

  signal(signal: number): void {
    if (this.running) this.#runtime?.signal(signal);
  }

  resize(rows: number, cols: number): void {
    if (this.running) this.#runtime?.resize(rows, cols);
  }

  /** Ends the process record once; output still arriving is kept until the streams end. */
  finish(status: ExitStatus): void {
    if (!this.info.running) return;
    clearTimeout(this.#timer);
    this.info.running = false;
    this.info.exitStatus = status;
    this.stdout.close();
    this.stderr.close();
    // What the streams will hold once the queued output is stored.
    this.info.stdoutLength = BigInt(this.stdout.appendedLength);
    this.info.stderrLength = BigInt(this.stderr.appendedLength);
    this.sandbox.persistProcess(this);
    this.ended.notify();
    this.lifecycle.ended();
    this.sandbox.processEnded(this);
  }
}
