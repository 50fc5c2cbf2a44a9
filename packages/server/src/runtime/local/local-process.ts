/**
 * One process of a local sandbox, as the server sees it: the agent's word that it started
 * (with its stdio pipes, see agent-stdio.ts), failed or exited; its output read paced and held
 * under back-pressure; the signals and resizes sent for it.
 */
import type { Socket } from "node:net";
import type { RuntimeExit, RuntimeProcess } from "@sbx/server-kit";
import type { ProcessStdio } from "./agent-stdio.js";
import { type PacedReads, paceReads } from "./read-pacing.js";

/** Extra time for a process's output to drain after it exits (daemons may hold it open). */
const DRAIN_GRACE_MS = 1_000;

export class LocalProcess implements RuntimeProcess {
  pid = 0;
  readonly exit: Promise<RuntimeExit>;
  readonly whenStarted: Promise<void>;
  signalSender: ((signal: number) => void) | undefined;
  resizer: ((rows: number, cols: number) => void) | undefined;
  #resolveExit!: (exit: RuntimeExit) => void;
  #started!: { resolve: () => void; reject: (e: Error) => void };
  #exit: RuntimeExit | undefined;
  readonly #open = new Set<Socket>();
  /** Each output stream's pacing: back-pressure pauses through it (see read-pacing.ts). */
  readonly #paced = new Map<Socket, PacedReads>();
  #stdout: Socket | undefined;
  #stderr: Socket | undefined;
  #stdin: Socket | undefined;
  #outputPaused = false;
  #drainGrace: NodeJS.Timeout | undefined;

  constructor() {
    this.exit = new Promise((resolve) => {
      this.#resolveExit = resolve;
    });
    this.whenStarted = new Promise((resolve, reject) => {
      this.#started = { resolve, reject };
    });
  }

  /** Whether it has exited (or failed): a late start is not its any more. */
  get ended(): boolean {
    return this.#exit !== undefined;
  }

  /** Whether it has started (with its pipes): a second start is not believed. */
  get hasStarted(): boolean {
    return this.#stdin !== undefined;
  }

  onStdout(listener: (chunk: Uint8Array) => void): void {
    this.#stdout?.on("data", listener);
    this.#stdout?.resume();
  }

  onStderr(listener: (chunk: Uint8Array) => void): void {
    this.#stderr?.on("data", listener);
    this.#stderr?.resume();
  }

  pauseOutput(): void {
    if (this.#outputPaused) return;
    this.#outputPaused = true;
    for (const paced of this.#paced.values()) paced.hold();
  }

  resumeOutput(): void {
    if (!this.#outputPaused) return;
    this.#outputPaused = false;
    for (const paced of this.#paced.values()) paced.release();
    if (this.#exit) this.#startDrainGrace();
  }

  writeStdin(data: Uint8Array): Promise<void> {
    return new Promise((resolve) => {
      const stdin = this.#stdin;
      if (!stdin || stdin.destroyed || stdin.writableEnded) return resolve();
      stdin.write(data, () => resolve());
    });
  }

  closeStdin(): Promise<void> {
    return new Promise((resolve) => {
      const stdin = this.#stdin;
      if (!stdin || stdin.destroyed || stdin.writableEnded) return resolve();
      stdin.end(() => resolve());
    });
  }

  signal(signal: number): void {
    if (!this.#exit) this.signalSender?.(signal);
  }

  resize(rows: number, cols: number): void {
    if (!this.#exit) this.resizer?.(rows, cols);
  }

  /** The agent started it, with these pipes (which it now owns). */
  started(pid: number, stdio: ProcessStdio): void {
    this.pid = pid;
    this.#stdout = stdio.stdout;
    this.#stderr = stdio.stderr;
    this.#stdin = stdio.stdin;
    for (const s of stdio.stderr ? [stdio.stdout, stdio.stderr] : [stdio.stdout]) {
      this.#open.add(s);
      s.pause();
      this.#paced.set(s, paceReads(s)); // a trickling writer must not wake the server once per byte
      s.on("close", () => {
        this.#open.delete(s);
        this.#maybeDone();
      });
      s.on("error", () => {});
    }
    stdio.stdin.on("error", () => {});
    this.#started.resolve();
  }

  failed(error: Error): void {
    this.#started.reject(error);
    this.exited({ kind: "exited", code: 127 });
  }

  exited(exit: RuntimeExit): void {
    if (this.#exit) return;
    this.#exit = exit;
    this.#started.resolve();
    this.#stdin?.destroy();
    // Paused by back-pressure: what is left in the pipes is read (and the grace starts) on resume.
    if (!this.#outputPaused) this.#startDrainGrace();
    this.#maybeDone();
  }

  #startDrainGrace(): void {
    this.#drainGrace ??= setTimeout(() => {
      for (const s of this.#open) s.destroy();
    }, DRAIN_GRACE_MS).unref();
  }

  /** The sandbox is gone: whatever has not exited was killed with it. */
  sandboxEnded(): void {
    this.exited({ kind: "signaled", signal: 9 });
    for (const s of this.#open) s.destroy();
  }

  #maybeDone(): void {
    if (!this.#exit || this.#open.size > 0) return;
    // Nothing left to drain: the grace timer would only hold this process (and its closed
    // streams) in memory for another second.
    clearTimeout(this.#drainGrace);
    this.#resolveExit(this.#exit);
  }
}
