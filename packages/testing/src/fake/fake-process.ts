/**
 * A process in the fake driver: an `onExec` handler (or the mini shell) run with an
 * ExecContext, its writes delivered as the process's output, its return value or failure as
 * its exit. Signals act as Linux's default actions do: those that terminate end it, those
 * ignored by default (SIGCHLD, SIGCONT, SIGURG, SIGWINCH) and the stop signals do nothing.
 */
import { MemoryOutputLog, type RuntimeExit, type RuntimeProcess, type RuntimeProcessSpec } from "@sbx/server-kit";
import { commandOf, type ExecContext, type ExecHandler, type ExecResult } from "./handlers.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const bytesOf = (data: string | Uint8Array) => (typeof data === "string" ? encoder.encode(data) : data);

/** Signals whose default action is to ignore (or stop, which the fake does not model). */
const HARMLESS_SIGNALS = new Set([17, 18, 19, 20, 21, 22, 23, 28]);

/** Output chunks held until the engine listens (it does right after exec resolves). */
class OutputChannel {
  #listener: ((chunk: Uint8Array) => void) | undefined;
  #held: Uint8Array[] = [];

  listen(listener: (chunk: Uint8Array) => void): void {
    this.#listener = listener;
    for (const chunk of this.#held.splice(0)) listener(chunk);
  }

  emit(chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return;
    if (this.#listener) this.#listener(chunk);
    else this.#held.push(chunk);
  }
}

export interface FakeProcessSetup {
  readonly pid: number;
  readonly spec: RuntimeProcessSpec;
  readonly env: Readonly<Record<string, string>>;
  /** The user it runs as: the image's User ("name", "uid", "name:group", "uid:gid"), or "root". */
  readonly user: string;
  readonly workdir: string;
  readonly sandboxId: string;
  readonly processId: string;
}

export class FakeRuntimeProcess implements RuntimeProcess {
  readonly pid: number;
  readonly exit: Promise<RuntimeExit>;
  readonly #stdout = new OutputChannel();
  readonly #stderr = new OutputChannel();
  readonly #stdin = new MemoryOutputLog(Number.POSITIVE_INFINITY); // stdin is never dropped
  readonly #abort = new AbortController();
  readonly #spec: RuntimeProcessSpec;
  #resolveExit!: (exit: RuntimeExit) => void;
  #ended = false;
  /** The terminal's size, for processes started with a pty. */
  terminal: { rows: number; cols: number } | undefined;

  constructor(readonly setup: FakeProcessSetup) {
    this.pid = setup.pid;
    this.#spec = setup.spec;
    if (setup.spec.pty) this.terminal = { rows: setup.spec.ptySize?.rows || 24, cols: setup.spec.ptySize?.cols || 80 };
    this.exit = new Promise((resolve) => {
      this.#resolveExit = resolve;
    });
  }

  get running(): boolean {
    return !this.#ended;
  }

  /** Runs `handler` (on a later tick, so the caller listens first), ending with what it returns. */
  run(handler: ExecHandler, match: RegExpMatchArray | null): void {
    const context = this.#context(match);
    Promise.resolve()
      .then(() => handler(context))
      .then(
        (result) => this.#complete(result),
        (error: unknown) => {
          if (this.#ended) return;
          this.writeErr(`${error instanceof Error ? error.message : String(error)}\n`);
          this.end({ kind: "exited", code: 1 });
        },
      );
  }

  writeOut(data: string | Uint8Array): void {
    if (this.#ended) return;
    // A terminal turns "\n" into "\r\n" (the line discipline's onlcr), like a real pty.
    this.#stdout.emit(this.terminal ? onlcr(bytesOf(data)) : bytesOf(data));
  }

  writeErr(data: string | Uint8Array): void {
    if (this.#ended) return;
    if (this.terminal || this.#spec.mergeStderr)
      this.writeOut(data); // one stream
    else this.#stderr.emit(bytesOf(data));
  }

  /** Ends the process once: its handler's signal aborts, later writes are dropped. */
  end(exit: RuntimeExit): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#abort.abort(new Error("process ended"));
    this.#stdin.close();
    this.#resolveExit(exit);
  }

  onStdout(listener: (chunk: Uint8Array) => void): void {
    this.#stdout.listen(listener);
  }

  onStderr(listener: (chunk: Uint8Array) => void): void {
    this.#stderr.listen(listener);
  }

  pauseOutput(): void {} // memory keeps up: nothing to slow down

  resumeOutput(): void {}

  async writeStdin(data: Uint8Array): Promise<void> {
    this.#stdin.append(data);
  }

  async closeStdin(): Promise<void> {
    this.#stdin.close();
  }

  signal(signal: number): void {
    if (HARMLESS_SIGNALS.has(signal)) return;
    this.end({ kind: "signaled", signal });
  }

  resize(rows: number, cols: number): void {
    if (this.terminal && !this.#ended) this.terminal = { rows, cols };
  }

  #complete(result: ExecResult): void {
    if (this.#ended) return;
    let code = 0;
    if (typeof result === "number") code = result;
    else if (result && typeof result === "object") {
      if (result.stdout !== undefined) this.writeOut(result.stdout);
      if (result.stderr !== undefined) this.writeErr(result.stderr);
      code = result.exitCode ?? 0;
    }
    this.end({ kind: "exited", code });
  }

  #context(match: RegExpMatchArray | null): ExecContext {
    const signal = this.#abort.signal;
    const stdin = this.#stdin;
    const argv = [...this.#spec.argv];
    return {
      argv,
      command: commandOf(argv),
      match,
      env: this.setup.env,
      user: this.setup.user,
      workdir: this.setup.workdir,
      sandboxId: this.setup.sandboxId,
      processId: this.setup.processId,
      stdout: { write: (d) => this.writeOut(d) },
      stderr: { write: (d) => this.writeErr(d) },
      stdin: {
        async *[Symbol.asyncIterator]() {
          for await (const chunk of stdin.read(0, signal)) yield chunk.data;
        },
        async text() {
          let out = "";
          for await (const chunk of stdin.read(0, signal)) out += decoder.decode(chunk.data, { stream: true });
          return out + decoder.decode();
        },
      },
      signal,
      sleep: (ms) =>
        new Promise<void>((resolve, reject) => {
          if (signal.aborted) return reject(signal.reason);
          const timer = setTimeout(done, ms);
          (timer as { unref?: () => void }).unref?.();
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
