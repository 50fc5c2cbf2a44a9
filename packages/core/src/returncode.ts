import type { ExitStatus } from "@sbx/proto";
import {
  InternalError,
  type SandboxError,
  SandboxIdleTimeoutError,
  SandboxTerminatedError,
  SandboxTimeoutError,
} from "./errors.js";

/** Return code reported for a sandbox or process that ran past its timeout. */
export const TIMEOUT_RETURNCODE = 124;
/** Return code reported for a terminated sandbox (as if killed by SIGKILL). */
export const TERMINATED_RETURNCODE = 137;

/**
 * Maps how something ended to a POSIX-style return code: the exit code itself, 128 + n for
 * signal n, 124 for a timeout, 137 for termination, and null when it is not known.
 */
export function returncodeOf(status: ExitStatus | undefined): number | null {
  const kind = status?.kind;
  switch (kind?.case) {
    case "exited":
      return kind.value;
    case "signaled":
      return 128 + kind.value;
    case "timedOut":
      return TIMEOUT_RETURNCODE;
    case "terminated":
      return TERMINATED_RETURNCODE;
    default:
      return null;
  }
}

/** The return code of something that has ended; throws when the server could not tell how. */
export function knownReturncode(status: ExitStatus | undefined, what: string): number {
  const code = returncodeOf(status);
  if (code === null) throw new InternalError(`${what} ended, but the server does not know its exit status`);
  return code;
}

/** The error for a process (or a read of its output) that ended because its sandbox ended. */
export function sandboxEndedError(
  sandboxId: string,
  sandboxStatus: ExitStatus | undefined,
  what: string,
): SandboxError {
  if (sandboxStatus?.kind.case === "timedOut") return sandboxTimeoutError(sandboxId, sandboxStatus, `${what}: `);
  return new SandboxTerminatedError(`${what}: sandbox ${sandboxId} ended`);
}

/** The error for a sandbox that timed out: its idle timeout, or its lifetime (`timeoutMs`). */
export function sandboxTimeoutError(sandboxId: string, status: ExitStatus, prefix = ""): SandboxError {
  return status.idle
    ? new SandboxIdleTimeoutError(`${prefix}sandbox ${sandboxId} was idle for its idleTimeoutMs and was stopped`)
    : new SandboxTimeoutError(`${prefix}sandbox ${sandboxId} ran past its timeout`);
}
