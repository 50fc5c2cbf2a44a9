/**
 * Process operations as Effects over `SbxConnection`: start (with a client-chosen id, so a retried
 * start never runs twice), wait, signal and offset-addressed stdin writes.
 */
import { type Process as ProcessInfo, type ProcessSpec, ptySizeProblem } from "@sbx/proto";
import { StdioMode } from "@sbx/proto/wire";
import * as Effect from "effect/Effect";
import { FailedPreconditionError, InvalidError, type SandboxError } from "./errors.js";
import { randomId } from "./ids.js";
import { longPoll, longPollSettings } from "./long-poll.js";
import { sandboxEndedError } from "./returncode.js";
import { call, type SbxConnection } from "./rpc.js";
import { getSandbox, isFinished } from "./sandbox-ops.js";
import {
  validateAbsolutePath,
  validateArgv,
  validateDuration,
  validated,
  validateEnv,
  validateOneOf,
} from "./validation.js";

export type { ProcessInfo };

export interface ExecOptions {
  /** "text" (default): streams yield strings. "binary": streams yield `Uint8Array`. */
  readonly mode?: "text" | "binary";
  /** "pipe" (default): readable through `stdout`. "ignore": discarded. */
  readonly stdout?: "pipe" | "ignore";
  /** "pipe" (default), "ignore", or "stdout": merged into stdout. */
  readonly stderr?: "pipe" | "ignore" | "stdout";
  /** Absolute working directory; default: the sandbox's. */
  readonly workdir?: string;
  /** Environment variables, added to the sandbox's. */
  readonly env?: Record<string, string>;
  /** Kill the process after this long; it then reports return code 124. 0 or unset: no limit. */
  readonly timeoutMs?: number;
  /** Run under a pseudo-terminal: stdout and stderr become one stream (stdout). */
  readonly pty?: boolean;
  /** The terminal's initial size with `pty` (default 24 rows × 80 columns). */
  readonly ptySize?: PtySizeOptions;
}

export interface PtySizeOptions {
  /** Terminal height in lines. */
  readonly rows: number;
  /** Terminal width in columns. */
  readonly cols: number;
}

/** POSIX signal numbers by name (Linux numbering). */
export const SIGNALS = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGWINCH: 28,
} as const;
export type SignalName = keyof typeof SIGNALS;

export function signalNumber(signal: SignalName | number | undefined): number {
  if (signal === undefined) return SIGNALS.SIGKILL;
  if (typeof signal === "number") {
    if (!Number.isInteger(signal) || signal < 1 || signal > 64) throw new InvalidError(`invalid signal ${signal}`);
    return signal;
  }
  const n = SIGNALS[signal as SignalName];
  if (n === undefined) throw new InvalidError(`unknown signal ${JSON.stringify(signal)}`);
  return n;
}

const processOf = (response: { process?: ProcessInfo | undefined }): ProcessInfo => {
  if (!response.process) throw new Error("server response is missing the process");
  return response.process;
};

export function processSpecOf(argv: string[], options: ExecOptions) {
  if (typeof options !== "object" || options === null) throw new InvalidError("exec options must be an object");
  const spec: ProcessSpec = {
    $typeName: "sbx.v1.ProcessSpec",
    argv: validateArgv(argv, "command"),
    workdir: "",
    env: {},
    timeoutMs: 0n,
    pty: false,
    stdout: StdioMode.UNSPECIFIED,
    stderr: StdioMode.UNSPECIFIED,
    killOnDisconnect: false,
  };
  if (options.mode !== undefined) validateOneOf(options.mode, ["text", "binary"], "mode");
  const stdout = validateOneOf(options.stdout ?? "pipe", ["pipe", "ignore"], "stdout");
  const stderr = validateOneOf(options.stderr ?? "pipe", ["pipe", "ignore", "stdout"], "stderr");
  spec.stdout = stdout === "ignore" ? StdioMode.IGNORE : StdioMode.PIPE;
  spec.stderr = stderr === "ignore" ? StdioMode.IGNORE : stderr === "stdout" ? StdioMode.STDOUT : StdioMode.PIPE;
  if (options.workdir !== undefined) spec.workdir = validateAbsolutePath(options.workdir, "workdir");
  if (options.env !== undefined) spec.env = validateEnv(options.env);
  if (options.timeoutMs !== undefined) spec.timeoutMs = BigInt(validateDuration(options.timeoutMs, "timeoutMs"));
  if (options.pty !== undefined) spec.pty = Boolean(options.pty);
  if (options.ptySize !== undefined) {
    if (!spec.pty) throw new InvalidError("ptySize needs pty: true");
    spec.ptySize = { $typeName: "sbx.v1.PtySize", ...validatePtySize(options.ptySize) };
  }
  return spec;
}

export function validatePtySize(size: PtySizeOptions): PtySizeOptions {
  if (typeof size !== "object" || size === null) throw new InvalidError("ptySize must be { rows, cols }");
  const problem = ptySizeProblem(size.rows, size.cols, false);
  if (problem) throw new InvalidError(problem);
  return { rows: size.rows, cols: size.cols };
}

export const startProcess = (
  sandboxId: string,
  argv: string[],
  options: ExecOptions = {},
): Effect.Effect<ProcessInfo, SandboxError, SbxConnection> =>
  Effect.gen(function* () {
    const spec = yield* validated(() => processSpecOf(argv, options));
    return yield* startProcessWith(sandboxId, randomId("p-"), spec);
  });

/** Starts a process from a validated spec under a client-chosen id (a retried start runs it once). */
export const startProcessWith = (
  sandboxId: string,
  processId: string,
  spec: ProcessSpec,
): Effect.Effect<ProcessInfo, SandboxError, SbxConnection> =>
  Effect.gen(function* () {
    const response = yield* call(`exec in sandbox ${sandboxId}`, (rpc, o) =>
      rpc.processes.startProcess({ sandboxId, processId, spec }, o),
    ).pipe(Effect.catch((error) => endedSandboxError(sandboxId, error)));
    return processOf(response);
  });

/**
 * A refused exec in a sandbox that has ended says so as in-flight calls do
 * (`SandboxTerminatedError`, or `SandboxTimeoutError` after a timeout) rather than as a bare
 * precondition failure; any other failure is left as it is.
 */
const endedSandboxError = (
  sandboxId: string,
  error: SandboxError,
): Effect.Effect<never, SandboxError, SbxConnection> => {
  if (!(error instanceof FailedPreconditionError)) return Effect.fail(error);
  return getSandbox(sandboxId).pipe(
    Effect.catch(() => Effect.fail(error)),
    Effect.flatMap((info) =>
      Effect.fail(
        isFinished(info) ? sandboxEndedError(sandboxId, info.exitStatus, `exec in sandbox ${sandboxId}`) : error,
      ),
    ),
  );
};

export const getProcess = (
  sandboxId: string,
  processId: string,
): Effect.Effect<ProcessInfo, SandboxError, SbxConnection> =>
  call(`get process ${processId}`, (rpc, o) => rpc.processes.getProcess({ sandboxId, processId }, o)).pipe(
    Effect.map(processOf),
  );

export const waitProcess = (
  sandboxId: string,
  processId: string,
  timeoutMs?: number,
): Effect.Effect<ProcessInfo, SandboxError, SbxConnection> =>
  longPoll(
    `waiting for process ${processId}`,
    (holdMs) =>
      call(
        `wait for process ${processId}`,
        (rpc, o) => rpc.processes.waitProcess({ sandboxId, processId, timeoutMs: holdMs }, o),
        longPollSettings(holdMs),
      ).pipe(Effect.map((r) => ({ done: r.done, process: processOf(r) }))),
    timeoutMs,
  ).pipe(Effect.map((r) => r.process));

export const signalProcess = (
  sandboxId: string,
  processId: string,
  signal?: SignalName | number,
): Effect.Effect<ProcessInfo, SandboxError, SbxConnection> =>
  Effect.gen(function* () {
    const n = yield* validated(() => signalNumber(signal));
    const response = yield* call(`signal process ${processId}`, (rpc, o) =>
      rpc.processes.signalProcess({ sandboxId, processId, signal: n }, o),
    );
    return processOf(response);
  });

/**
 * Writes stdin bytes starting at byte `offset`. The server skips bytes it already has, so
 * retrying after a lost response applies them once. Returns the committed length.
 */
export const writeStdin = (
  sandboxId: string,
  processId: string,
  offset: number,
  data: Uint8Array,
  eof = false,
): Effect.Effect<number, SandboxError, SbxConnection> =>
  call(`write stdin of ${processId}`, (rpc, o) =>
    rpc.processes.writeStdin({ sandboxId, processId, offset: BigInt(offset), data, eof }, o),
  ).pipe(Effect.map((r) => Number(r.committedOffset)));

export const resizePty = (
  sandboxId: string,
  processId: string,
  rows: number,
  cols: number,
): Effect.Effect<void, SandboxError, SbxConnection> =>
  Effect.gen(function* () {
    const size = yield* validated(() => validatePtySize({ rows, cols }));
    yield* call(`resize the terminal of ${processId}`, (rpc, o) =>
      rpc.processes.resizePty({ sandboxId, processId, size }, o),
    );
  });
