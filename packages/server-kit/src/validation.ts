/** The contract's input rules (from @sbx/proto) as Connect errors. */
import { Code, ConnectError } from "@connectrpc/connect";
import {
  argvProblem,
  envProblem,
  idProblem,
  MAX_COMMAND_TTL_MS,
  nameProblem,
  type ProcessSpec,
  type PtySize,
  pathProblem,
  ptySizeProblem,
  tagsProblem,
  timeoutProblem,
  workdirProblem,
} from "@sbx/proto";

export const invalid = (message: string) => new ConnectError(message, Code.InvalidArgument);

const check = (problem: string | undefined) => {
  if (problem) throw invalid(problem);
};

export const checkName = (value: string, what: string) => check(nameProblem(value, what));
export const checkId = (value: string, what: string) => check(idProblem(value, what));
export const checkArgv = (argv: readonly string[], what: string, allowEmpty: boolean) =>
  check(argvProblem(argv, what, allowEmpty));
export const checkPath = (path: string) => check(pathProblem(path));
export const checkWorkdir = (workdir: string) => check(workdirProblem(workdir));
export const checkEnv = (env: Readonly<Record<string, string>>) => check(envProblem(env));
export const checkTags = (tags: Readonly<Record<string, string>>) => check(tagsProblem(tags));

/** A process spec's timeouts, lifecycle and terminal size. */
export function checkLifecycle(spec: ProcessSpec): void {
  check(timeoutProblem(spec.timeoutMs, "timeout_ms"));
  if (spec.idleTimeoutMs !== undefined) check(timeoutProblem(spec.idleTimeoutMs, "idle_timeout_ms"));
  if (spec.ttlMs !== undefined) check(timeoutProblem(spec.ttlMs, "ttl_ms", MAX_COMMAND_TTL_MS));
  if (spec.ptySize) check(ptySizeProblem(spec.ptySize.rows, spec.ptySize.cols, true));
  if (spec.ptySize && !spec.pty) throw invalid("pty_size needs pty");
}

export function checkPtySize(size: PtySize | undefined): PtySize {
  if (!size) throw invalid("size is required");
  check(ptySizeProblem(size.rows, size.cols, false));
  return size;
}
