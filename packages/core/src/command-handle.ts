/**
 * Commands (LangSmith's `run` / `CommandHandle`): a shell command whose interleaved stdout
 * and stderr arrive as `OutputChunk`s, each with its byte offset within its stream. The
 * handle remembers how far it has read, so it resumes after a dropped connection or a
 * server restart without losing or repeating a byte, and any client can reconnect to the
 * command by its id and offsets.
 */
import type { Process as ProcessInfo } from "@sbx/proto";
import * as Stream from "effect/Stream";
import { COMMAND_HANDLE } from "./brands.js";
import {
  type CommandOptions,
  commandSpecOf,
  commandStreams,
  type ExecutionResult,
  executionResultOf,
  type OutputChunk,
  type OutputStreamName,
} from "./command-ops.js";
import type { EffectRunner } from "./effect-runner.js";
import { InvalidError } from "./errors.js";
import { randomId } from "./ids.js";
import { outputText, outputTextChunks } from "./output-stream.js";
import { getProcess, resizePty, type SignalName, signalProcess, startProcessWith, waitProcess } from "./process-ops.js";
import { StreamWriter } from "./stdin-writer.js";
import type { TextChunk } from "./utf8.js";

export interface RunOptions extends CommandOptions {
  /** Called with stdout text as it arrives (`wait: true` only). */
  readonly onStdout?: (text: string) => void;
  /** Called with stderr text as it arrives (`wait: true` only). */
  readonly onStderr?: (text: string) => void;
  /** false: resolve a `CommandHandle` at once instead of waiting for the result. */
  readonly wait?: boolean;
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

/** The process spec of `sb.run(command, options)`: the command through the sandbox's shell. */
export function runSpecOf(command: string, options: RunOptions) {
  if (typeof options === "object" && options !== null) {
    for (const callback of ["onStdout", "onStderr"] as const) {
      if (options[callback] !== undefined && typeof options[callback] !== "function") {
        throw new InvalidError(`${callback} must be a function`);
      }
    }
  }
  return commandSpecOf(command, options);
}

type StreamName = OutputStreamName;

/**
 * Text an iterating handle keeps for `result`, per stream. Past this, the kept text is dropped
 * (a command streaming gigabytes must not grow the client's memory) and `result` reads the
 * stream again from the server, which retains it for the command's TTL.
 */
export const RESULT_MEMORY_CHARS = 16 * 1024 * 1024;

/** Per-stream read position (the end of the bytes delivered as text), and the text kept for `result`. */
class StreamCursor {
  /** Where this handle's view of the stream begins (0, or a reconnect's offset). */
  readonly start: number;
  /** End of the bytes delivered as text: where a new read (or a reconnect) starts. */
  delivered: number;
  #kept: string[] = [];
  #keptChars = 0;
  /** The kept text was dropped (too large): `result` must read the stream again. */
  overflowed = false;

  constructor(offset: number) {
    this.start = offset;
    this.delivered = offset;
  }

  /** Everything delivered since `start`, unless it overflowed. */
  get text(): string {
    return this.#kept.join("");
  }

  /** `chunk` is being delivered: move past it and keep its text. */
  take(chunk: TextChunk, keepAll = false): void {
    this.delivered = chunk.end;
    if (this.overflowed) return;
    this.#kept.push(chunk.text);
    this.#keptChars += chunk.text.length;
    if (!keepAll && this.#keptChars > RESULT_MEMORY_CHARS) {
      this.overflowed = true;
      this.#kept = [];
      this.#keptChars = 0;
    }
  }
}

export class CommandHandle implements AsyncIterable<OutputChunk> {
  /** @internal What `instanceof CommandHandle` checks (see lazy-classes.ts). */
  readonly [COMMAND_HANDLE] = true;
  readonly sandboxId: string;
  /** The command's id: reconnect to it with `sb.reconnect(commandId)` from any client. */
  readonly commandId: string;
  readonly #runner: EffectRunner;
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
  constructor(runner: EffectRunner, info: ProcessInfo, offsets: { stdout?: number; stderr?: number } = {}) {
    this.#runner = runner;
    this.#info = info;
    this.sandboxId = info.sandboxId;
    this.commandId = info.processId;
    this.#cursors = { stdout: new StreamCursor(offsets.stdout ?? 0), stderr: new StreamCursor(offsets.stderr ?? 0) };
    this.#streams = commandStreams(info);
    this.#stdin = new StreamWriter(runner, info.sandboxId, info.processId, Number(info.stdinLength), info.stdinClosed);
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
        const source = { sandboxId: this.sandboxId, processId: this.commandId, stream };
        const chunks = outputTextChunks(source, cursors[stream].delivered).pipe(
          Stream.map((chunk) => ({ stream, chunk })),
        );
        return this.#runner.iterate(chunks, options.signal);
      });
      for await (const { stream, chunk } of interleaved(sources)) {
        if (iteration?.superseded) return;
        cursors[stream].take(chunk, keepAll);
        yield { stream, data: chunk.text, offset: chunk.offset };
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
    this.#info = await this.#runner.run(signalProcess(this.sandboxId, this.commandId, signal), options.signal);
  }

  /** Changes the terminal size of a command started with `pty: true`. */
  async resize(rows: number, cols: number, options: HandleCallOptions = {}): Promise<void> {
    await this.#runner.run(resizePty(this.sandboxId, this.commandId, rows, cols), options.signal);
  }

  /** A new handle for the same command, resuming from this one's offsets. */
  reconnect(options: HandleCallOptions = {}): Promise<CommandHandle> {
    return reconnectCommand(this.#runner, this.sandboxId, this.commandId, {
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
    for await (const text of this.#runner.iterate(outputText(source, offset), signal)) parts.push(text);
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
    this.#info = await this.#runner.run(waitProcess(this.sandboxId, this.commandId), signal);
    return executionResultOf(
      this.#info,
      beside ? beside[0] : await this.#keptText("stdout", signal),
      beside ? beside[1] : await this.#keptText("stderr", signal),
    );
  }
}

/** `sb.run(command, options)`: starts the command; waits for its result unless `wait: false`. */
export async function runCommand(
  runner: EffectRunner,
  sandboxId: string,
  command: string,
  options: RunOptions = {},
): Promise<CommandHandle | ExecutionResult> {
  const spec = runSpecOf(command, options);
  const info = await runner.run(startProcessWith(sandboxId, randomId("cmd-"), spec), options.signal);
  const handle = new CommandHandle(runner, info);
  if (options.wait === false) return handle;
  try {
    return await handle.collect(options.signal, (chunk) => {
      if (chunk.stream === "stdout") options.onStdout?.(chunk.data);
      else options.onStderr?.(chunk.data);
    });
  } catch (error) {
    // Aborted or failed while waiting: do not leave the command running for nobody (a
    // command that has already ended is left as it is).
    if (!runner.closed) await handle.kill().catch(() => {});
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
  runner: EffectRunner,
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
  const info = await runner.run(getProcess(sandboxId, commandId), options.signal);
  return new CommandHandle(runner, info, offsets);
}

/**
 * The items of `sources` as each arrives. Leaving early, or a failure of one source, closes
 * them all (`EffectRunner.iterate`'s `return()` stops a pull in flight at once). Written out
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
