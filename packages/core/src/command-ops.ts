/**
 * Command operations as Effects over `SbxConnection` (LangSmith's `run`): a shell command
 * (`sh -c`) under a client-chosen id, its output as `OutputChunk`s with byte offsets, and its
 * `ExecutionResult`. The Effect API's `Commands`; the Promise API's `CommandHandle` is built
 * on the same spec and result.
 */
import type { Process as ProcessInfo, ProcessSpec } from "@sbx/proto";
import { StdioMode } from "@sbx/proto/wire";
import * as Effect from "effect/Effect";
import * as Stream from "effect/Stream";
import { CommandTimeoutError, InvalidError, type SandboxError } from "./errors.js";
import { randomId } from "./ids.js";
import { outputText, outputTextChunks } from "./output-stream.js";
import {
  getProcess,
  type PtySizeOptions,
  processSpecOf,
  signalProcess,
  startProcessWith,
  waitProcess,
} from "./process-ops.js";
import { knownReturncode, sandboxEndedError } from "./returncode.js";
import type { SbxConnection } from "./rpc.js";
import { validateDuration, validated } from "./validation.js";

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

/** How a command runs (`sb.run`'s options without the callbacks). */
export interface CommandOptions {
  /** Kill the command after this long (`CommandTimeoutError`). Default 60 s; 0: no limit. */
  readonly timeoutMs?: number;
  /** Environment variables, added to the sandbox's. */
  readonly env?: Record<string, string>;
  /** Absolute working directory; default: the sandbox's. */
  readonly workdir?: string;
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
}

/** Where to start reading a command's output (byte offsets; default 0, the start). */
export interface OutputOffsets {
  readonly stdoutOffset?: number;
  readonly stderrOffset?: number;
}

export const DEFAULT_RUN_TIMEOUT_MS = 60_000;
export const DEFAULT_COMMAND_IDLE_TIMEOUT_MS = 300_000;
export const DEFAULT_COMMAND_TTL_MS = 600_000;

export type OutputStreamName = "stdout" | "stderr";

/** A positive duration, or -1 (never) → undefined; unset → the default. */
function lifecycleMs(value: number | undefined, fallback: number, what: string): bigint | undefined {
  if (value === undefined) return BigInt(fallback);
  if (value === -1) return undefined;
  return BigInt(validateDuration(value, what));
}

/** The process spec of a command: `command` through the sandbox's shell. */
export function commandSpecOf(command: string, options: CommandOptions): ProcessSpec {
  if (typeof command !== "string" || command.trim() === "") {
    throw new InvalidError("command must be a non-empty string");
  }
  if (typeof options !== "object" || options === null) throw new InvalidError("run options must be an object");
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

/** The streams a command's output comes on (none that is ignored; a terminal merges stderr into stdout). */
export function commandStreams(info: ProcessInfo): OutputStreamName[] {
  const spec = info.spec;
  const streams: OutputStreamName[] = [];
  if (spec?.stdout !== StdioMode.IGNORE) streams.push("stdout");
  if (!spec?.pty && (spec?.stderr === StdioMode.PIPE || spec?.stderr === StdioMode.UNSPECIFIED)) {
    streams.push("stderr");
  }
  return streams;
}

/**
 * A finished command's result from its output and its process: throws `CommandTimeoutError`
 * if it ran past its timeout, `SandboxTerminatedError` / `SandboxTimeoutError` if its sandbox
 * ended first.
 */
export function executionResultOf(info: ProcessInfo, stdout: string, stderr: string): ExecutionResult {
  if (info.sandboxEnded) throw sandboxEndedError(info.sandboxId, info.sandboxExitStatus, `command ${info.processId}`);
  if (info.exitStatus?.kind.case === "timedOut") {
    throw new CommandTimeoutError(
      `command ${info.processId} ran past its timeout of ${Number(info.spec?.timeoutMs ?? 0n)} ms and was killed`,
    );
  }
  const exitCode = knownReturncode(info.exitStatus, `command ${info.processId}`);
  return { stdout, stderr, exitCode, success: exitCode === 0 };
}

/** Starts a command; its process's id (`processId`) is the command's id. */
export const startCommand = (
  sandboxId: string,
  command: string,
  options: CommandOptions = {},
): Effect.Effect<ProcessInfo, SandboxError, SbxConnection> =>
  Effect.flatMap(
    validated(() => commandSpecOf(command, options)),
    (spec) => startProcessWith(sandboxId, randomId("cmd-"), spec),
  );

function offsetOf(value: number | undefined, what: string): number {
  if (value === undefined) return 0;
  if (!Number.isSafeInteger(value) || value < 0) throw new InvalidError(`${what} must be a non-negative integer`);
  return value;
}

/**
 * A command's stdout and stderr as they arrive (interleaved), from the given offsets to the
 * command's end; resumes after dropped connections without losing or repeating a byte.
 */
export const commandOutput = (
  sandboxId: string,
  commandId: string,
  offsets: OutputOffsets = {},
): Stream.Stream<OutputChunk, SandboxError, SbxConnection> =>
  Stream.unwrap(
    Effect.gen(function* () {
      const from = yield* validated(() => ({
        stdout: offsetOf(offsets.stdoutOffset, "stdoutOffset"),
        stderr: offsetOf(offsets.stderrOffset, "stderrOffset"),
      }));
      const info = yield* getProcess(sandboxId, commandId);
      const streams = commandStreams(info).map((stream) =>
        outputTextChunks({ sandboxId, processId: commandId, stream }, from[stream]).pipe(
          Stream.map((chunk): OutputChunk => ({ stream, data: chunk.text, offset: chunk.offset })),
        ),
      );
      return Stream.mergeAll(streams, { concurrency: "unbounded" });
    }),
  );

/** A command's result once it has finished: its whole output (from the offsets) and exit code. */
export const commandResult = (
  sandboxId: string,
  commandId: string,
  offsets: OutputOffsets = {},
): Effect.Effect<ExecutionResult, SandboxError, SbxConnection> =>
  Effect.gen(function* () {
    const from = yield* validated(() => ({
      stdout: offsetOf(offsets.stdoutOffset, "stdoutOffset"),
      stderr: offsetOf(offsets.stderrOffset, "stderrOffset"),
    }));
    const streams = commandStreams(yield* getProcess(sandboxId, commandId));
    const textOf = (stream: OutputStreamName) =>
      streams.includes(stream)
        ? Stream.mkString(outputText({ sandboxId, processId: commandId, stream }, from[stream]))
        : Effect.succeed("");
    const [stdout, stderr] = yield* Effect.all([textOf("stdout"), textOf("stderr")], { concurrency: 2 });
    const info = yield* waitProcess(sandboxId, commandId);
    return yield* Effect.try({
      try: () => executionResultOf(info, stdout, stderr),
      catch: (error) => error as SandboxError,
    });
  });

/**
 * Runs a command to its end and resolves its result (`sb.run(command)`). A failure or an
 * interruption while waiting kills the command, so it does not run on for nobody.
 */
export const runCommandToEnd = (
  sandboxId: string,
  command: string,
  options: CommandOptions = {},
): Effect.Effect<ExecutionResult, SandboxError, SbxConnection> =>
  Effect.flatMap(startCommand(sandboxId, command, options), (info) =>
    commandResult(sandboxId, info.processId).pipe(
      Effect.onExit((exit) =>
        exit._tag === "Success" ? Effect.void : Effect.ignore(signalProcess(sandboxId, info.processId, "SIGKILL")),
      ),
    ),
  );
