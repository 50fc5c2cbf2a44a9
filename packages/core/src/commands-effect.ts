/**
 * Command operations for the Effect API (`Commands.run`, `Commands.output`, …): what
 * `sb.run(command)` and `CommandHandle` do, as Effects and Streams. A command is a process
 * started through the sandbox's shell (`sh -c`); its id is that process's id, so `Processes`
 * (stdin writes, signals) works on it too.
 */
import type * as Effect from "effect/Effect";
import type { SandboxError } from "./errors.js";
import { getProcess, type ProcessInfo, type SignalName, signalProcess } from "./process-ops.js";
import type { SbxConnection } from "./rpc.js";

export {
  type CommandOptions,
  commandOutput as output,
  commandResult as result,
  type ExecutionResult,
  type OutputChunk,
  type OutputOffsets,
  runCommandToEnd as run,
  startCommand as start,
} from "./command-ops.js";

/** The command's process (running or finished). */
export const get = (sandboxId: string, commandId: string): Effect.Effect<ProcessInfo, SandboxError, SbxConnection> =>
  getProcess(sandboxId, commandId);

/** Sends a signal (default SIGKILL); a command that already finished is left as it is. */
export const kill = (
  sandboxId: string,
  commandId: string,
  signal: SignalName | number = "SIGKILL",
): Effect.Effect<ProcessInfo, SandboxError, SbxConnection> => signalProcess(sandboxId, commandId, signal);
