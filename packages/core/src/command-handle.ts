/**
 * Commands (LangSmith's `run` / `CommandHandle`): a shell command whose interleaved stdout
 * and stderr arrive as `OutputChunk`s, each with its byte offset within its stream. The
 * handle remembers how far it has read, so it resumes after a dropped connection or a
 * server restart without losing or repeating a byte, and any client can reconnect to the
 * command by its id and offsets.
 */
import type { Process as ProcessInfo } from "@sbx/proto";
import { StdioMode } from "@sbx/proto/wire";
import * as Stream from "effect/Stream";
import type { ClientRuntime } from "./client-runtime.js";
import { CommandTimeoutError, InvalidError } from "./errors.js";
import { randomId } from "./ids.js";
import { outputChunks, outputText } from "./output-stream.js";
import {
  getProcess,
  type PtySizeOptions,
  processSpecOf,
  resizePty,
  type SignalName,
  signalProcess,
  startProcessWith,
  waitProcess,
} from "./process-ops.js";
import { knownReturncode, sandboxEndedError } from "./returncode.js";
import { StreamWriter } from "./stdin-writer.js";
import { validateDuration } from "./validation.js";

/** What `sb.run(command)` resolves to once the command has finished. */
export interface ExecutionResult {
  readonly stdout: string;
  readonly stderr: string;
  /** The exit code; 128 + n if killed by signal n. */
  readonly exitCode: number;
  /** `exitCode === 0`. */
  readonly success: boolean;
}

/** A piece of a command's output. */
export interface OutputChunk {
  readonly stream: "stdout" | "stderr";
  /** UTF-8 text; a character is never split between chunks. */
  readonly data: string;
  /** Byte offset of `data`'s first byte within its stream. */
  readonly offset: number;
}

export interface RunOptions {
  /** Kill the command after this long (`CommandTimeoutError`). Default 60 s; 0: no limit. */
  readonly timeoutMs?: number;
  /** Environment variables, added to the sandbox's. */
  readonly env?: Record<string, string>;
  /** Absolute working directory; default: the sandbox's. */
  readonly workdir?: string;
  /** Called with stdout text as it arrives (`wait: true` only). */
  readonly onStdout?: (text: string) => void;
  /** Called with stderr text as it arrives (`wait: true` only). */
  readonly onStderr?: (text: string) => void;
  /** false: resolve a `CommandHandle` at once instead of waiting for the result. */
  readonly wait?: boolean;
  /** Kill the running command once no client has been attached for this long. Default 5 min; -1: never. */
  readonly idleTimeoutMs?: number;
  /** Kill the command when its last attached client goes away. Default false. */
  readonly killOnDisconnect?: boolean;
  /** Keep a finished command's output for reconnecting this long. Default 10 min; -1: as long as the sandbox. */
  readonly ttlMs?: number;
  /** Run under a pseudo-terminal (stdout and stderr merged into stdout). */
  readonly pty?: boolean;
  /** The terminal's initial size with `pty` (default 24 rows × 80 columns). */
  readonly ptySize?: PtySizeOptions;
  /** Aborting stops waiting and kills the command (with `wait: false`: only the start is aborted). */
  readonly signal?: AbortSignal;
}

export interface ReconnectOptions {
  /** Resume stdout from this byte offset (default 0: from the start). */
  readonly stdoutOffset?: number;
  /** Resume stderr from this byte offset (default 0: from the start). */
  readonly stderrOffset?: number;
  /** Cancels the call (the command keeps running). */
  readonly signal?: AbortSignal;
}

export interface HandleCallOptions {
  /** Cancels the call (the command keeps running). */
  readonly signal?: AbortSignal;
}

export const DEFAULT_RUN_TIMEOUT_MS = 60_000;
export const DEFAULT_COMMAND_IDLE_TIMEOUT_MS = 300_000;
export const DEFAULT_COMMAND_TTL_MS = 600_000;

/** A positive duration, or -1 (never) → undefined; unset → the default. */
function lifecycleMs(value: number | undefined, fallback: number, what: string): bigint | undefined {
  if (value === undefined) return BigInt(fallback);
  if (value === -1) return undefined;
  return BigInt(validateDuration(value, what));
}

/** The process spec of `sb.run(command, options)`: the command through the sandbox's shell. */
export function runSpecOf(command: string, options: RunOptions) {
  if (typeof command !== "string" || command.trim() === "") {
    throw new InvalidError("command must be a non-empty string");
  }
  if (typeof options !== "object" || options === null) throw new InvalidError("run options must be an object");
  for (const callback of ["onStdout", "onStderr"] as const) {
    if (options[callback] !== undefined && typeof options[callback] !== "function") {
      throw new InvalidError(`${callback} must be a function`);
    }
  }
  const spec = processSpecOf(["sh", "-c", command], {
    ...(options.env !== undefined ? { env: options.env } : {}),
    ...(options.workdir !== undefined ? { workdir: options.workdir } : {}),
    timeoutMs: options.timeoutMs ?? DEFAULT_RUN_TIMEOUT_MS,
    ...(options.pty !== undefined ? { pty: options.pty } : {}),
    ...(options.ptySize !== undefined ? { ptySize: options.ptySize } : {}),
  });
  spec.idleTimeoutMs = lifecycleMs(options.idleTimeoutMs, DEFAULT_COMMAND_IDLE_TIMEOUT_MS, "idleTimeoutMs");
  spec.ttlMs = lifecycleMs(options.ttlMs, DEFAULT_COMMAND_TTL_MS, "ttlMs");
  spec.killOnDisconnect = Boolean(options.killOnDisconnect);
  return spec;
}

type StreamName = "stdout" | "stderr";

/**
 * Text an iterating handle keeps for `result`, per stream. Past this, the kept text is dropped
 * (a command streaming gigabytes must not grow the client's memory) and `result` reads the
 * stream again from the server, which retains it for the command's TTL.
 */
export const RESULT_MEMORY_CHARS = 16 * 1024 * 1024;

/** Per-stream read position: bytes delivered as text, plus a character's bytes not yet complete. */
class StreamCursor {
  /** Where this handle's view of the stream begins (0, or a reconnect's offset). */
  readonly start: number;
  /** End of the bytes delivered as text: where a new read (or a reconnect) starts. */
  delivered: number;
  #pending = new Uint8Array(0);
  #pendingAt: number;
  readonly #decoder = new TextDecoder();
  #kept: string[] = [];
  #keptChars = 0;
  /** The kept text was dropped (too large): `result` must read the stream again. */
  overflowed = false;

  constructor(offset: number) {
    this.start = offset;
    this.delivered = offset;
    this.#pendingAt = offset;
  }

  /** Everything delivered since `start`, unless it overflowed. */
  get text(): string {
    return this.#kept.join("");
  }

  /** A new read starts at `delivered`: forget a partial character (it is read again). */
  restart(): void {
    this.#pending = new Uint8Array(0);
    this.#pendingAt = this.delivered;
  }

  /** Bytes at `offset` → the text they complete (and its starting offset), or undefined. */
  take(offset: number, data: Uint8Array, keepAll = false): { data: string; offset: number } | undefined {
    let bytes = data;
    let start = offset;
    if (this.#pending.byteLength > 0) {
      bytes = new Uint8Array(this.#pending.byteLength + data.byteLength);
      bytes.set(this.#pending);
      bytes.set(data, this.#pending.byteLength);
      start = this.#pendingAt;
    }
    const complete = completeUtf8Length(bytes);
    this.#pending = bytes.slice(complete);
    this.#pendingAt = start + complete;
    if (complete === 0) return undefined;
    const text = this.#decoder.decode(bytes.subarray(0, complete));
    this.delivered = start + complete;
    this.#keep(text, keepAll);
    return { data: text, offset: start };
  }

  /** The stream ended: whatever is pending is delivered as it is (an invalid tail). */
  flush(keepAll = false): { data: string; offset: number } | undefined {
    if (this.#pending.byteLength === 0) return undefined;
    const text = this.#decoder.decode(this.#pending);
    const at = this.#pendingAt;
    this.delivered = at + this.#pending.byteLength;
    this.restart();
    this.#keep(text, keepAll);
    return { data: text, offset: at };
  }

  #keep(text: string, keepAll: boolean): void {
    if (this.overflowed) return;
    this.#kept.push(text);
    this.#keptChars += text.length;
    if (!keepAll && this.#keptChars > RESULT_MEMORY_CHARS) {
      this.overflowed = true;
      this.#kept = [];
      this.#keptChars = 0;
    }
  }
}

/** Length of the longest prefix of `bytes` that does not end inside a UTF-8 character. */
export function completeUtf8Length(bytes: Uint8Array): number {
  const n = bytes.byteLength;
  for (let back = 1; back <= Math.min(4, n); back++) {
    const b = bytes[n - back] as number;
    if ((b & 0xc0) === 0x80) continue; // a continuation byte: look further back
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return need > back ? n - back : n;
  }
  return n;
}

export class CommandHandle implements AsyncIterable<OutputChunk> {
  readonly sandboxId: string;
  /** The command's id: reconnect to it with `sb.reconnect(commandId)` from any client. */
  readonly commandId: string;
  readonly #runtime: ClientRuntime;
  readonly #stdin: StreamWriter;
  readonly #cursors: Record<StreamName, StreamCursor>;
  readonly #streams: readonly StreamName[];
  #info: ProcessInfo;
  #result: Promise<ExecutionResult> | undefined;
  /** The iteration running now, if any: iterations take turns so offsets stay exact. */
  #active: Promise<void> = Promise.resolve();
  /**
   * Callers' iterations that have started and not finished. One may have been left half-read
   * (`next()` without `return()`): a later iteration takes over from it, and `result` reads
   * the rest of the output beside it instead of waiting for it.
   */
  readonly #iterations = new Set<UserIteration>();

  /** @internal */
  constructor(runtime: ClientRuntime, info: ProcessInfo, offsets: { stdout?: number; stderr?: number } = {}) {
    this.#runtime = runtime;
    this.#info = info;
    this.sandboxId = info.sandboxId;
    this.commandId = info.processId;
    this.#cursors = { stdout: new StreamCursor(offsets.stdout ?? 0), stderr: new StreamCursor(offsets.stderr ?? 0) };
    const spec = info.spec;
    const streams: StreamName[] = [];
    if (spec?.stdout !== StdioMode.IGNORE) streams.push("stdout");
    if (!spec?.pty && (spec?.stderr === StdioMode.PIPE || spec?.stderr === StdioMode.UNSPECIFIED)) {
      streams.push("stderr");
    }
    this.#streams = streams;
    this.#stdin = new StreamWriter(runtime, info.sandboxId, info.processId, Number(info.stdinLength), info.stdinClosed);
  }

  /** The command's process id inside the sandbox (undefined if the server does not know it). */
  get pid(): number | undefined {
    return this.#info.pid || undefined;
  }

  /** Bytes of stdout delivered so far (from the start of the stream): resume here. */
  get stdoutOffset(): number {
    return this.#cursors.stdout.delivered;
  }

  get stderrOffset(): number {
    return this.#cursors.stderr.delivered;
  }

  [Symbol.asyncIterator](): AsyncIterator<OutputChunk> {
    return this.chunks()[Symbol.asyncIterator]();
  }

  /**
   * stdout and stderr chunks as they arrive, from where this handle has got to, until the
   * command ends. Survives dropped connections and server restarts (it resumes at the
   * offsets); a dead sandbox ends it with `SandboxTerminatedError`. Starting a new iteration
   * ends an unfinished earlier one (it reports done), and the new one goes on from there.
   */
  chunks(options: HandleCallOptions = {}): AsyncGenerator<OutputChunk> {
    const iteration: UserIteration = { superseded: false, generator: undefined };
    iteration.generator = this.#chunks(options, false, iteration);
    return iteration.generator;
  }

  /**
   * Reads from where the handle has got to. A caller's iteration (`iteration` set) ends the
   * ones before it: one left suspended at a `yield` is closed at once (nobody may ever resume
   * it), one waiting for output stops before taking its next chunk, so no byte is delivered
   * twice or skipped.
   */
  async *#chunks(options: HandleCallOptions, keepAll: boolean, iteration?: UserIteration): AsyncGenerator<OutputChunk> {
    if (iteration) {
      for (const earlier of this.#iterations) {
        earlier.superseded = true;
        earlier.generator?.return(undefined).catch(() => {});
      }
      this.#iterations.add(iteration);
    }
    const previous = this.#active;
    let release!: () => void;
    this.#active = new Promise((resolve) => {
      release = resolve;
    });
    try {
      await previous;
      if (iteration?.superseded) return;
      const cursors = this.#cursors;
      const sources = this.#streams.map((stream) => {
        cursors[stream].restart();
        const source = { sandboxId: this.sandboxId, processId: this.commandId, stream };
        const chunks = outputChunks(source, cursors[stream].delivered).pipe(
          Stream.map((chunk) => ({ stream, ...chunk })),
        );
        return this.#runtime.iterate(chunks, options.signal);
      });
      for await (const chunk of interleaved(sources)) {
        if (iteration?.superseded) return;
        const text = cursors[chunk.stream].take(chunk.offset, chunk.data, keepAll);
        if (text) yield { stream: chunk.stream, ...text };
      }
      for (const stream of this.#streams) {
        if (iteration?.superseded) return;
        const rest = cursors[stream].flush(keepAll);
        if (rest) yield { stream, ...rest };
      }
    } finally {
      if (iteration) this.#iterations.delete(iteration);
      release();
    }
  }

  /**
   * The command's result once it has finished: the output this handle has seen plus the
   * rest (also when an iteration was left half-read). Rejects with `CommandTimeoutError` if it ran past its timeout, and with
   * `SandboxTerminatedError` / `SandboxTimeoutError` if its sandbox ended first.
   */
  get result(): Promise<ExecutionResult> {
    this.#result ??= this.collect();
    return this.#result;
  }

  /** Waits for the result (same as `result`, with a signal). */
  async wait(options: HandleCallOptions = {}): Promise<ExecutionResult> {
    if (!options.signal) return this.result;
    return this.collect(options.signal);
  }

  /** Sends data to the command's stdin. */
  async sendInput(data: string | Uint8Array, options: HandleCallOptions = {}): Promise<void> {
    await this.#stdin.write(data, options);
  }

  /** Ends the command's stdin (with a terminal: sends end-of-file, ^D). */
  async closeInput(options: HandleCallOptions = {}): Promise<void> {
    await this.#stdin.close(options);
  }

  /** Sends a signal (default SIGKILL). A command that already finished is left as it is. */
  async kill(signal: SignalName | number = "SIGKILL", options: HandleCallOptions = {}): Promise<void> {
    this.#info = await this.#runtime.run(signalProcess(this.sandboxId, this.commandId, signal), options.signal);
  }

  /** Changes the terminal size of a command started with `pty: true`. */
  async resize(rows: number, cols: number, options: HandleCallOptions = {}): Promise<void> {
    await this.#runtime.run(resizePty(this.sandboxId, this.commandId, rows, cols), options.signal);
  }

  /** A new handle for the same command, resuming from this one's offsets. */
  reconnect(options: HandleCallOptions = {}): Promise<CommandHandle> {
    return reconnectCommand(this.#runtime, this.sandboxId, this.commandId, {
      stdoutOffset: this.stdoutOffset,
      stderrOffset: this.stderrOffset,
      ...(options.signal ? { signal: options.signal } : {}),
    });
  }

  /** The stream's text from where this handle began: kept in memory, or read again if it was too large. */
  async #keptText(stream: StreamName, signal?: AbortSignal): Promise<string> {
    const cursor = this.#cursors[stream];
    if (!cursor.overflowed) return cursor.text;
    return this.#readText(stream, cursor.start, signal);
  }

  /** The stream's text from byte `offset` to its end, read without moving this handle's offsets. */
  async #readText(stream: StreamName, offset: number, signal?: AbortSignal): Promise<string> {
    const source = { sandboxId: this.sandboxId, processId: this.commandId, stream };
    const parts: string[] = [];
    for await (const text of this.#runtime.iterate(outputText(source, offset), signal)) parts.push(text);
    return parts.join("");
  }

  /**
   * The whole output from where this handle began, while a caller's iteration holds the
   * handle (maybe one left half-read for good): what it has delivered, then the rest read
   * beside it.
   */
  async #textBesideIteration(stream: StreamName, signal?: AbortSignal): Promise<string> {
    if (!this.#streams.includes(stream)) return "";
    const cursor = this.#cursors[stream];
    if (cursor.overflowed) return this.#readText(stream, cursor.start, signal);
    const seen = cursor.text;
    return seen + (await this.#readText(stream, cursor.delivered, signal));
  }

  /**
   * @internal Reads the rest of the output (keeping all of it for the result), passing each
   * chunk to `onChunk`, then waits for the exit: what `result` and `sb.run()` resolve to.
   */
  async collect(signal?: AbortSignal, onChunk?: (chunk: OutputChunk) => void): Promise<ExecutionResult> {
    let beside: [string, string] | undefined;
    if (this.#iterations.size > 0) {
      beside = await Promise.all([
        this.#textBesideIteration("stdout", signal),
        this.#textBesideIteration("stderr", signal),
      ]);
    } else {
      for await (const chunk of this.#chunks(signal ? { signal } : {}, true)) onChunk?.(chunk);
    }
    this.#info = await this.#runtime.run(waitProcess(this.sandboxId, this.commandId), signal);
    const info = this.#info;
    if (info.sandboxEnded) throw sandboxEndedError(this.sandboxId, info.sandboxExitStatus, `command ${this.commandId}`);
    if (info.exitStatus?.kind.case === "timedOut") {
      throw new CommandTimeoutError(
        `command ${this.commandId} ran past its timeout of ${Number(info.spec?.timeoutMs ?? 0n)} ms and was killed`,
      );
    }
    const exitCode = knownReturncode(info.exitStatus, `command ${this.commandId}`);
    return {
      stdout: beside ? beside[0] : await this.#keptText("stdout", signal),
      stderr: beside ? beside[1] : await this.#keptText("stderr", signal),
      exitCode,
      success: exitCode === 0,
    };
  }
}

/** `sb.run(command, options)`: starts the command; waits for its result unless `wait: false`. */
export async function runCommand(
  runtime: ClientRuntime,
  sandboxId: string,
  command: string,
  options: RunOptions = {},
): Promise<CommandHandle | ExecutionResult> {
  const spec = runSpecOf(command, options);
  const info = await runtime.run(startProcessWith(sandboxId, randomId("cmd-"), spec), options.signal);
  const handle = new CommandHandle(runtime, info);
  if (options.wait === false) return handle;
  try {
    return await handle.collect(options.signal, (chunk) => {
      if (chunk.stream === "stdout") options.onStdout?.(chunk.data);
      else options.onStderr?.(chunk.data);
    });
  } catch (error) {
    // Aborted or failed while waiting: do not leave the command running for nobody (a
    // command that has already ended is left as it is).
    if (!runtime.closed) await handle.kill().catch(() => {});
    throw error;
  }
}

/** A caller's iteration over a handle; a later one supersedes it. */
interface UserIteration {
  superseded: boolean;
  generator: AsyncGenerator<OutputChunk> | undefined;
}

/** `sb.reconnect(commandId, offsets)`: a handle for a command started by any client. */
export async function reconnectCommand(
  runtime: ClientRuntime,
  sandboxId: string,
  commandId: string,
  options: ReconnectOptions = {},
): Promise<CommandHandle> {
  if (typeof commandId !== "string" || commandId === "") throw new InvalidError("commandId must be a non-empty string");
  const offset = (value: number | undefined, what: string) => {
    if (value === undefined) return 0;
    if (!Number.isSafeInteger(value) || value < 0) throw new InvalidError(`${what} must be a non-negative integer`);
    return value;
  };
  const offsets = {
    stdout: offset(options.stdoutOffset, "stdoutOffset"),
    stderr: offset(options.stderrOffset, "stderrOffset"),
  };
  const info = await runtime.run(getProcess(sandboxId, commandId), options.signal);
  return new CommandHandle(runtime, info, offsets);
}

/**
 * The items of `sources` as each arrives. Leaving early, or a failure of one source, closes
 * them all (`ClientRuntime.iterate`'s `return()` stops a pull in flight at once). Written out
 * rather than with `Stream.merge`, which costs several KiB in a browser bundle.
 */
async function* interleaved<T>(sources: readonly AsyncIterator<T>[]): AsyncGenerator<T> {
  const pending = new Map<number, Promise<{ index: number; result: IteratorResult<T> }>>();
  const pull = (index: number) => {
    pending.set(
      index,
      (sources[index] as AsyncIterator<T>).next().then((result) => ({ index, result })),
    );
  };
  for (let index = 0; index < sources.length; index++) pull(index);
  try {
    while (pending.size > 0) {
      const { index, result } = await Promise.race(pending.values());
      if (result.done) {
        pending.delete(index);
        continue;
      }
      pull(index);
      yield result.value;
    }
  } finally {
    await Promise.allSettled(sources.map((source) => source.return?.()));
  }
}
