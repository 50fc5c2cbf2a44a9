/**
 * The fake's in-memory sandboxes and processes: lifecycle, timers, output logs, stdin,
 * each sandbox's files, and notifications for long-polls.
 */
import { create } from "@bufbuild/protobuf";
import {
  type ExitStatus,
  ExitStatusSchema,
  type Process,
  ProcessSchema,
  type ProcessSpec,
  ProcessSpecSchema,
  type Sandbox,
  SandboxSchema,
  type SandboxSpec,
  SandboxState,
  StdioMode,
} from "@sbx/proto";
import { Changes, CommandLifecycle } from "@sbx/server-kit";
import { FakeFilesystem } from "./filesystem.js";
import { commandOf, type ExecContext, type ExecResult, type HandlerRegistry } from "./handlers.js";
import { miniShell } from "./mini-shell.js";
import { OutputLog } from "./output-log.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytesOf = (data: string | Uint8Array) => (typeof data === "string" ? encoder.encode(data) : data);

export const exited = (code: number): ExitStatus => create(ExitStatusSchema, { kind: { case: "exited", value: code } });
export const signaled = (signal: number): ExitStatus =>
  create(ExitStatusSchema, { kind: { case: "signaled", value: signal } });
export const timedOut = (): ExitStatus => create(ExitStatusSchema, { kind: { case: "timedOut", value: true } });
/** A sandbox stopped because its idle timeout ran out: a timeout (124) that says it was idle. */
export const idleTimedOut = (): ExitStatus =>
  create(ExitStatusSchema, { kind: { case: "timedOut", value: true }, idle: true });
export const terminated = (): ExitStatus => create(ExitStatusSchema, { kind: { case: "terminated", value: true } });

/** stdin as bytes accepted so far, with end-of-input, readable by one handler. */
class StdinBuffer {
  readonly log = new OutputLog(Number.POSITIVE_INFINITY); // stdin is never dropped
  get length(): number {
    return this.log.length;
  }
  get closed(): boolean {
    return this.log.closed;
  }
}

export class FakeProcess {
  readonly info: Process;
  readonly stdout: OutputLog;
  readonly stderr: OutputLog;
  readonly stdin = new StdinBuffer();
  /** Notified when the process ends (long-polls wait on it). */
  readonly ended = new Changes();
  /** Who is attached, idle timeout, kill-on-disconnect and TTL (the same policy as the server's). */
  readonly lifecycle: CommandLifecycle;
  /** The terminal's size, for processes started with pty. */
  terminal: { rows: number; cols: number } | undefined;
  readonly #abort = new AbortController();
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly sandbox: FakeSandbox,
    processId: string,
    spec: ProcessSpec,
    pid: number,
    private readonly keepAlive = false,
  ) {
    this.info = create(ProcessSchema, { sandboxId: sandbox.info.id, processId, spec, running: true, pid });
    this.stdout = new OutputLog(sandbox.outputRetentionBytes);
    this.stderr = new OutputLog(sandbox.outputRetentionBytes);
    if (spec.pty) this.terminal = { rows: spec.ptySize?.rows || 24, cols: spec.ptySize?.cols || 80 };
    this.lifecycle = new CommandLifecycle({
      idleTimeoutMs: spec.idleTimeoutMs === undefined ? undefined : Number(spec.idleTimeoutMs),
      killOnDisconnect: spec.killOnDisconnect,
      ttlMs: spec.ttlMs === undefined ? undefined : Number(spec.ttlMs),
      kill: () => this.finish(signaled(9)),
      expire: () => {
        if (sandbox.processes.get(processId) === this) sandbox.processes.delete(processId);
      },
    });
  }

  resize(rows: number, cols: number): void {
    if (this.terminal && this.running) this.terminal = { rows, cols };
  }

  get running(): boolean {
    return this.info.running;
  }

  start(handlers: HandlerRegistry, defaults: boolean): void {
    const timeoutMs = Number(this.info.spec?.timeoutMs ?? 0n);
    if (timeoutMs > 0) this.#timer = unref(setTimeout(() => this.finish(timedOut()), timeoutMs));
    if (this.keepAlive) return; // runs until killed
    const argv = this.info.spec?.argv ?? [];
    const found = handlers.find(argv);
    const files = this.sandbox.fs;
    const handler = found?.handler ?? (defaults ? (ctx: ExecContext) => miniShell(ctx, files) : undefined);
    if (!handler) {
      this.writeErr(`fake: no handler for command: ${commandOf(argv)}\n`);
      this.finish(exited(127));
      return;
    }
    const context = this.#context(found?.match ?? null);
    Promise.resolve()
      .then(() => handler(context))
      .then(
        (result) => this.#complete(result),
        (error: unknown) => {
          if (this.#abort.signal.aborted) return;
          this.writeErr(`${error instanceof Error ? error.message : String(error)}\n`);
          this.finish(exited(1));
        },
      );
  }

  writeOut(data: string | Uint8Array): void {
    if (!this.running) return;
    if (this.info.spec?.stdout === StdioMode.IGNORE) return;
    // A terminal turns "\n" into "\r\n" (the line discipline's onlcr), like a real pty.
    this.stdout.append(this.terminal ? onlcr(bytesOf(data)) : bytesOf(data));
    this.#touch();
  }

  writeErr(data: string | Uint8Array): void {
    if (!this.running) return;
    if (this.terminal) {
      this.writeOut(data); // one terminal, one stream
      return;
    }
    const mode = this.info.spec?.stderr;
    if (mode === StdioMode.IGNORE) return;
    if (mode === StdioMode.STDOUT) this.writeOut(data);
    else {
      this.stderr.append(bytesOf(data));
      this.#touch();
    }
  }

  /** Ends the process once; later calls do nothing. */
  finish(status: ExitStatus): void {
    if (!this.running) return;
    this.info.running = false;
    this.info.exitStatus = status;
    clearTimeout(this.#timer);
    this.stdout.close();
    this.stderr.close();
    this.#abort.abort(new Error("process ended"));
    this.#touch();
    this.ended.notify();
    this.lifecycle.ended();
    this.sandbox.processEnded(this);
  }

  #touch(): void {
    this.info.stdoutLength = BigInt(this.stdout.length);
    this.info.stderrLength = BigInt(this.stderr.length);
    this.info.stdinLength = BigInt(this.stdin.length);
    this.info.stdinClosed = this.stdin.closed;
  }

  /** Accepts stdin bytes written at `offset`; returns the committed length or an error text. */
  writeStdin(offset: number, data: Uint8Array, eof: boolean): { committed: number } | { error: string } {
    const committed = this.stdin.length;
    if (offset > committed) return { error: `stdin gap: write at byte ${offset} but only ${committed} written` };
    const fresh = data.subarray(Math.min(data.byteLength, committed - offset));
    if (this.stdin.closed) {
      if (fresh.byteLength > 0) return { error: "stdin is closed" };
      return { committed };
    }
    // Bytes for a process that already ended are accepted (and never read), like a closed pipe.
    this.stdin.log.append(fresh);
    if (eof) this.stdin.log.close();
    this.#touch();
    return { committed: this.stdin.length };
  }

  #complete(result: ExecResult): void {
    if (!this.running) return;
    let code = 0;
    if (typeof result === "number") code = result;
    else if (result && typeof result === "object") {
      if (result.stdout !== undefined) this.writeOut(result.stdout);
      if (result.stderr !== undefined) this.writeErr(result.stderr);
      code = result.exitCode ?? 0;
    }
    this.finish(exited(code));
  }

  #context(match: RegExpMatchArray | null): ExecContext {
    const signal = this.#abort.signal;
    const stdinLog = this.stdin.log;
    const argv = [...(this.info.spec?.argv ?? [])];
    return {
      argv,
      command: commandOf(argv),
      match,
      env: { ...this.sandbox.info.spec?.env, ...this.info.spec?.env },
      workdir: this.info.spec?.workdir || this.sandbox.info.spec?.workdir || "/",
      sandboxId: this.sandbox.info.id,
      processId: this.info.processId,
      stdout: { write: (d) => this.writeOut(d) },
      stderr: { write: (d) => this.writeErr(d) },
      stdin: {
        async *[Symbol.asyncIterator]() {
          for await (const chunk of stdinLog.read(0, signal)) yield chunk.data;
        },
        async text() {
          let out = "";
          for await (const chunk of stdinLog.read(0, signal)) out += decoder.decode(chunk.data, { stream: true });
          return out + decoder.decode();
        },
      },
      signal,
      sleep: (ms) =>
        new Promise<void>((resolve, reject) => {
          if (signal.aborted) return reject(signal.reason);
          const timer = unref(setTimeout(done, ms));
          function done() {
            signal.removeEventListener("abort", onAbort);
            resolve();
          }
          function onAbort() {
            clearTimeout(timer);
            reject(signal.reason);
          }
          signal.addEventListener("abort", onAbort, { once: true });
        }),
    };
  }
}

export const ENTRYPOINT = "entrypoint";

export class FakeSandbox {
  readonly info: Sandbox;
  readonly processes = new Map<string, FakeProcess>();
  readonly changes = new Changes();
  /** The sandbox's files, shared by the filesystem calls and the mini shell. */
  readonly fs: FakeFilesystem;
  #timers: ReturnType<typeof setTimeout>[] = [];
  #idleTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    id: string,
    spec: SandboxSpec,
    readonly requestId: string,
    readonly sequence: number,
    /** Bytes of output kept per process stream. */
    readonly outputRetentionBytes?: number,
  ) {
    this.info = create(SandboxSchema, {
      id,
      spec,
      state: SandboxState.RUNNING,
      createdAtMs: BigInt(Date.now()),
      entrypointProcessId: ENTRYPOINT,
    });
    // The fake has no default disk limit (the server's driver has one).
    this.fs = new FakeFilesystem({ capacityBytes: spec.diskMib ? spec.diskMib * 1024 * 1024 : undefined });
  }

  get running(): boolean {
    return this.info.state !== SandboxState.FINISHED;
  }

  start(handlers: HandlerRegistry, defaults: boolean, nextPid: () => number): void {
    const spec = this.info.spec as SandboxSpec;
    const command = spec.command;
    const entrySpec = create(ProcessSpecSchema, { argv: [...command], workdir: spec.workdir, pty: spec.pty });
    const entry = new FakeProcess(this, ENTRYPOINT, entrySpec, nextPid(), command.length === 0);
    this.processes.set(ENTRYPOINT, entry);
    const timeoutMs = Number(spec.timeoutMs || 300_000n);
    this.#timers.push(unref(setTimeout(() => this.finish(timedOut()), timeoutMs)));
    this.touch();
    entry.start(handlers, defaults);
  }

  /** Any RPC on the sandbox, or process activity, postpones its idle timeout. */
  touch(): void {
    const idleMs = Number(this.info.spec?.idleTimeoutMs ?? 0n);
    if (idleMs <= 0 || !this.running) return;
    clearTimeout(this.#idleTimer);
    this.#idleTimer = unref(
      setTimeout(() => {
        const busy = [...this.processes.values()].some((p) => p.info.processId !== ENTRYPOINT && p.running);
        if (busy) this.touch();
        else this.finish(idleTimedOut());
      }, idleMs),
    );
  }

  processEnded(process: FakeProcess): void {
    if (process.info.processId === ENTRYPOINT && this.running) {
      this.finish(process.info.exitStatus ?? exited(0));
    }
    this.touch();
  }

  /** Ends the sandbox once: every process still running is killed. */
  finish(status: ExitStatus): void {
    if (!this.running) return;
    this.info.state = SandboxState.FINISHED;
    this.info.exitStatus = status;
    this.info.finishedAtMs = BigInt(Date.now());
    for (const t of this.#timers) clearTimeout(t);
    clearTimeout(this.#idleTimer);
    for (const p of this.processes.values()) {
      if (p.info.processId !== ENTRYPOINT && p.running) {
        p.info.sandboxEnded = true;
        p.info.sandboxExitStatus = status;
      }
      p.finish(p.info.processId === ENTRYPOINT ? status : signaled(9));
    }
    this.fs.close();
    this.changes.notify();
  }
}

function onlcr(data: Uint8Array): Uint8Array {
  let newlines = 0;
  for (const b of data) if (b === 0x0a) newlines++;
  if (newlines === 0) return data;
  const out = new Uint8Array(data.byteLength + newlines);
  let at = 0;
  for (const b of data) {
    if (b === 0x0a) out[at++] = 0x0d;
    out[at++] = b;
  }
  return out;
}

function unref<T>(timer: T): T {
  (timer as { unref?: () => void }).unref?.();
  return timer;
}
