/**
 * The server's sandboxes and processes: lifecycle, timers, retained output, stdin offsets
 * and persistence. RPC handlers call into this; the runtime driver does the isolation.
 */

import { mkdirSync, rmSync, statfs } from "node:fs";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import {
  type ExitStatus,
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
import { exited, fromRuntimeExit, idleTimedOut, signaled, terminated, timedOut } from "./exit-status.js";
import type { Logger } from "./logger.js";
import { OutputLog, type OutputLogOptions } from "./output-log.js";
import type { RuntimeProcess, RuntimeSandbox, SandboxRuntime } from "./runtime/runtime.js";
import type { StateStore } from "./state/store.js";

export const ENTRYPOINT = "entrypoint";
const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";
/** How long a timed-out process may take to be reported gone (its output drained) after the kill. */
const KILL_GRACE_MS = 10_000;

export function newSandboxId(): string {
  const bytes = new Uint8Array(20);
  crypto.getRandomValues(bytes);
  let id = "sb-";
  for (const b of bytes) id += ALPHABET[b % ALPHABET.length];
  return id;
}

export class ServerProcess {
  readonly stdout: OutputLog;
  readonly stderr: OutputLog;
  readonly ended = new Changes();
  /** Who is attached, idle timeout, kill-on-disconnect and TTL. */
  readonly lifecycle: CommandLifecycle;
  #runtime: RuntimeProcess | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Set when the exec timeout killed the process: its status once the runtime reports it gone. */
  #timedOut = false;
  #stdinClosed: boolean;
  /** The runtime reported the exit; the record ends once the output is written. */
  #exited = false;

  constructor(
    readonly sandbox: ServerSandbox,
    readonly info: Process,
    outputDir: string,
    restored = false,
  ) {
    const log = (stream: "stdout" | "stderr") => {
      const base = join(outputDir, `${safe(info.processId)}.${stream}`);
      if (restored) return OutputLog.restore(base);
      const options: OutputLogOptions = {
        retentionBytes: sandbox.engine.options.outputRetentionBytes,
        // The stream ends with DATA_LOSS for its readers; the server and the process go on.
        onError: (error) =>
          sandbox.engine.logger.error("storing output failed; the rest of this stream is lost", {
            sandbox: sandbox.info.id,
            process: info.processId,
            stream,
            error: error.message,
          }),
      };
      return new OutputLog(base, options);
    };
    this.stdout = log("stdout");
    this.stderr = log("stderr");
    this.#stdinClosed = info.stdinClosed;
    const spec = info.spec as ProcessSpec;
    this.lifecycle = new CommandLifecycle({
      idleTimeoutMs: spec.idleTimeoutMs === undefined ? undefined : Number(spec.idleTimeoutMs),
      killOnDisconnect: spec.killOnDisconnect,
      ttlMs: spec.ttlMs === undefined ? undefined : Number(spec.ttlMs),
      kill: (reason) => {
        sandbox.engine.logger.info("killing a command nobody is attached to", { id: info.processId, reason });
        this.signal(9);
      },
      expire: () => sandbox.forgetProcess(this),
    });
    if (restored) this.lifecycle.ended();
  }

  /** Deletes the retained output (the process's TTL ran out). */
  removeOutput(): void {
    this.stdout.remove();
    this.stderr.remove();
  }

  get running(): boolean {
    return this.info.running;
  }

  async start(runtime: RuntimeSandbox): Promise<void> {
    const spec = this.info.spec as ProcessSpec;
    const timeoutMs = Number(spec.timeoutMs);
    if (timeoutMs > 0) this.#timer = setTimeout(() => this.#timeout(), timeoutMs).unref();
    let rt: RuntimeProcess;
    try {
      rt = await runtime.exec({
        argv: spec.argv,
        env: spec.env,
        workdir: spec.workdir || undefined,
        pty: spec.pty,
        ptySize: spec.ptySize ? { rows: spec.ptySize.rows, cols: spec.ptySize.cols } : undefined,
        mergeStderr: spec.stderr === StdioMode.STDOUT,
      });
    } catch (error) {
      this.stderr.append(new TextEncoder().encode(`sbx: ${(error as Error).message}\n`));
      this.finish(exited(127));
      throw error;
    }
    this.#runtime = rt;
    this.info.pid = rt.pid;
    // Back-pressure: while a log has too much waiting for the disk, the process's output is
    // not read, so its pipe fills and it blocks on write (slowed to the disk's speed).
    const full = new Set<OutputLog>();
    const append = (log: OutputLog, chunk: Uint8Array) => {
      if (log.append(chunk) || full.has(log)) return;
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
    // Finished once its output is on disk too, so a reader told it ended finds all of it.
    void rt.exit.then(async (exit) => {
      this.#exited = true;
      await Promise.all([this.stdout.written(), this.stderr.written()]);
      this.finish(this.#timedOut ? timedOut() : fromRuntimeExit(exit));
    });
    this.sandbox.persistProcess(this);
  }

  /**
   * Kills the process; it ends (as timed out) when the runtime reports it gone, so the output
   * it wrote before the kill is all kept. If that never comes, it ends anyway.
   */
  #timeout(): void {
    if (!this.running || this.#exited || this.#timedOut) return;
    this.#timedOut = true;
    this.#runtime?.signal(9); // still starting: start() kills it once it has a runtime process
    this.#timer = setTimeout(() => this.finish(timedOut()), KILL_GRACE_MS).unref();
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
    await Promise.race([flushed, new Promise((r) => setTimeout(r, 5_000).unref())]);
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
    const close = () => {
      this.stdout.close();
      this.stderr.close();
      // What the streams will hold once the queued output is written.
      this.info.stdoutLength = BigInt(this.stdout.appendedLength);
      this.info.stderrLength = BigInt(this.stderr.appendedLength);
      this.sandbox.persistProcess(this);
      this.ended.notify();
      this.lifecycle.ended();
      this.sandbox.processEnded(this);
    };
    // A runtime exit (a timeout's too) resolves after output drained; when the sandbox ends,
    // or a timed-out process is never reported gone, the logs close at once.
    close();
  }
}

export class ServerSandbox {
  readonly processes = new Map<string, ServerProcess>();
  readonly ended = new Changes();
  runtime: RuntimeSandbox | undefined;
  readonly #outputDir: string;
  #timers: NodeJS.Timeout[] = [];
  #idleTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly engine: Engine,
    readonly info: Sandbox,
    readonly requestId: string,
    readonly sequence: number,
  ) {
    this.#outputDir = join(engine.dataDir, "sandboxes", info.id, "output");
    mkdirSync(this.#outputDir, { recursive: true });
  }

  get running(): boolean {
    return this.info.state !== SandboxState.FINISHED;
  }

  get spec(): SandboxSpec {
    return this.info.spec as SandboxSpec;
  }

  async start(runtime: SandboxRuntime): Promise<void> {
    const spec = this.spec;
    this.runtime = await runtime.createSandbox({
      id: this.info.id,
      env: spec.env,
      workdir: spec.workdir || undefined,
      cpuLimit: spec.cpu?.cores?.limit || undefined,
      memoryLimitMiB: spec.memory?.mib?.limit || undefined,
      blockNetwork: spec.blockNetwork,
      diskMiB: spec.diskMib || undefined,
    });
    this.runtime.died.then(() => this.finish(signaled(9)));
    this.#timers.push(setTimeout(() => this.finish(timedOut()), Number(spec.timeoutMs)).unref());
    const entry = this.addProcess(
      ENTRYPOINT,
      create(ProcessSpecSchema, {
        argv: [...spec.command],
        workdir: spec.workdir,
        pty: spec.pty,
        stdout: StdioMode.PIPE,
        stderr: StdioMode.PIPE,
      }),
    );
    this.touch();
    // No command: the sandbox just stays up; its entrypoint is a record that ends with it.
    if (spec.command.length > 0) await entry.start(this.runtime);
  }

  addProcess(processId: string, spec: ProcessSpec, restored?: Process): ServerProcess {
    const info = restored ?? create(ProcessSchema, { sandboxId: this.info.id, processId, spec, running: true });
    const process = new ServerProcess(this, info, this.#outputDir, restored !== undefined);
    this.processes.set(processId, process);
    if (!restored) this.persistProcess(process);
    return process;
  }

  /** RPCs and process activity postpone the idle timeout. */
  touch(): void {
    const idleMs = Number(this.spec.idleTimeoutMs);
    if (idleMs <= 0 || !this.running) return;
    clearTimeout(this.#idleTimer);
    this.#idleTimer = setTimeout(() => {
      const busy = [...this.processes.values()].some((p) => p.info.processId !== ENTRYPOINT && p.running);
      if (busy) this.touch();
      else this.finish(idleTimedOut());
    }, idleMs).unref();
  }

  processEnded(process: ServerProcess): void {
    if (process.info.processId === ENTRYPOINT && this.running) {
      this.finish(process.info.exitStatus ?? exited(0));
    }
    this.touch();
  }

  /** Ends the sandbox once: its processes are killed and its runtime resources released. */
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
    this.engine.persistSandbox(this);
    this.ended.notify();
    const runtime = this.runtime;
    this.engine.track(
      (async () => {
        await runtime?.destroy();
      })().catch((error) =>
        this.engine.logger.error("destroying sandbox failed", { id: this.info.id, error: String(error) }),
      ),
    );
  }

  persistProcess(process: ServerProcess): void {
    if (this.processes.get(process.info.processId) !== process) return;
    this.engine.saveState(() => this.engine.store.saveProcess(process.info));
  }

  /** Forgets a finished process: record, output and row (its TTL ran out). */
  forgetProcess(process: ServerProcess): void {
    if (this.processes.get(process.info.processId) !== process || process.running) return;
    this.processes.delete(process.info.processId);
    this.engine.saveState(() => this.engine.store.deleteProcess(this.info.id, process.info.processId));
    process.removeOutput();
  }
}

export interface EngineOptions {
  /** Bytes of output kept per process stream (older output is dropped). */
  readonly outputRetentionBytes?: number;
  /** Free bytes the data dir's filesystem keeps; default DEFAULT_DISK_RESERVE_BYTES or a tenth of it. */
  readonly diskReserveBytes?: number;
}

/**
 * Default free-space reserve: what sandboxes already running may still write (output up to
 * its bound, writable layers up to their limit) and what the server itself needs (state,
 * a restart) come out of it. A tenth of the filesystem when that is smaller, so a small data
 * disk is not refused outright.
 */
export const DEFAULT_DISK_RESERVE_BYTES = 1024 * 1024 * 1024;

export class Engine {
  readonly sandboxes = new Map<string, ServerSandbox>();
  readonly byRequestId = new Map<string, ServerSandbox>();
  #sequence = 0;
  readonly #pending = new Set<Promise<unknown>>();

  constructor(
    readonly runtime: SandboxRuntime,
    readonly store: StateStore,
    readonly dataDir: string,
    readonly logger: Logger,
    readonly options: EngineOptions = {},
  ) {}

  /** Loads every recorded sandbox; those that were running when the server died are marked terminated. */
  async restore(): Promise<void> {
    const { sandboxes, processes } = this.store.load();
    for (const record of sandboxes) {
      const sandbox = new ServerSandbox(this, record.sandbox, record.requestId, record.sequence);
      this.sandboxes.set(sandbox.info.id, sandbox);
      if (record.requestId) this.byRequestId.set(record.requestId, sandbox);
      this.#sequence = Math.max(this.#sequence, record.sequence + 1);
    }
    for (const info of processes) {
      const sandbox = this.sandboxes.get(info.sandboxId);
      if (!sandbox) continue;
      const wasRunning = info.running;
      info.running = false;
      if (wasRunning) info.exitStatus = info.processId === ENTRYPOINT ? terminated() : signaled(9);
      if (wasRunning && info.processId !== ENTRYPOINT) {
        info.sandboxEnded = true;
        info.sandboxExitStatus = terminated();
      }
      sandbox.addProcess(info.processId, info.spec as ProcessSpec, info);
      if (wasRunning) this.saveState(() => this.store.saveProcess(info));
    }
    for (const sandbox of this.sandboxes.values()) {
      if (sandbox.info.state !== SandboxState.FINISHED) {
        sandbox.info.state = SandboxState.FINISHED;
        sandbox.info.exitStatus = terminated();
        sandbox.info.finishedAtMs = BigInt(Date.now());
        this.persistSandbox(sandbox);
        this.logger.info("sandbox was running when the server stopped; marked terminated", { id: sandbox.info.id });
      }
    }
    await this.runtime.cleanupLeftovers();
  }

  async create(requestId: string, spec: SandboxSpec): Promise<ServerSandbox> {
    const info = create(SandboxSchema, {
      id: newSandboxId(),
      spec,
      state: SandboxState.RUNNING,
      createdAtMs: BigInt(Date.now()),
      entrypointProcessId: ENTRYPOINT,
    });
    const sandbox = new ServerSandbox(this, info, requestId, this.#sequence++);
    this.sandboxes.set(info.id, sandbox);
    if (requestId) this.byRequestId.set(requestId, sandbox);
    this.persistSandbox(sandbox);
    try {
      await sandbox.start(this.runtime);
    } catch (error) {
      this.logger.error("sandbox failed to start", { id: info.id, error: String(error) });
      sandbox.finish(exited(127));
      throw error;
    }
    return sandbox;
  }

  /** Why no sandbox may be created now (the data dir's filesystem is below its reserve), if so. */
  async diskSpaceProblem(): Promise<string | undefined> {
    let stats: { bavail: number; blocks: number; bsize: number };
    try {
      stats = await new Promise((resolve, reject) =>
        statfs(this.dataDir, (error, result) => (error ? reject(error) : resolve(result))),
      );
    } catch (error) {
      this.logger.error("cannot read the data dir's free space", { error: String(error) });
      return undefined;
    }
    const free = stats.bavail * stats.bsize;
    const reserve =
      this.options.diskReserveBytes ?? Math.min(DEFAULT_DISK_RESERVE_BYTES, (stats.blocks * stats.bsize) / 10);
    if (free >= reserve) return undefined;
    const mib = (bytes: number) => `${Math.floor(bytes / (1024 * 1024))} MiB`;
    return `the server's disk is nearly full: ${mib(free)} free on the filesystem of its data dir (${this.dataDir}), below its reserve of ${mib(reserve)}; no sandbox can be created until space is freed`;
  }

  persistSandbox(sandbox: ServerSandbox): void {
    this.saveState(() =>
      this.store.saveSandbox({ sandbox: sandbox.info, requestId: sandbox.requestId, sequence: sandbox.sequence }),
    );
  }

  /**
   * Runs a state-store write without letting its failure (a full disk) escape into timers and
   * exit handlers, where it would end the server: the in-memory state stays authoritative
   * while the server runs; only what a restart would see is stale.
   */
  saveState(write: () => void): void {
    try {
      write();
    } catch (error) {
      this.logger.error("saving state failed", { error: error instanceof Error ? error.message : String(error) });
    }
  }

  track(work: Promise<unknown>): void {
    this.#pending.add(work);
    work.finally(() => this.#pending.delete(work));
  }

  /** Terminates every running sandbox and waits until their resources are released. */
  async shutdown(): Promise<void> {
    for (const sandbox of this.sandboxes.values()) sandbox.finish(terminated());
    await Promise.allSettled([...this.#pending]);
    await this.runtime.close();
    this.store.close();
  }

  /** Removes the files of a sandbox (used by tests and future delete). */
  removeFiles(id: string): void {
    rmSync(join(this.dataDir, "sandboxes", id), { recursive: true, force: true });
  }
}

const safe = (id: string) => id.replace(/[^A-Za-z0-9._-]/g, "_");
