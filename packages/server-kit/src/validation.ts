/** The contract's input rules (from @sbx/proto) as Connect errors. */
import { Code, ConnectError } from "@connectrpc/connect";
import { argvProblem, envProblem, idProblem, nameProblem, tagsProblem, workdirProblem } from "@sbx/proto";

export const invalid = (message: string) => new ConnectError(message, Code.InvalidArgument);

const check = (problem: string | undefined) => {
  if (problem) throw invalid(problem);
};

export const checkName = (value: string, what: string) => check(nameProblem(value, what));
export const checkId = (value: string, what: string) => check(idProblem(value, what));
export const checkArgv = (argv: readonly string[], what: string, allowEmpty: boolean) =>
  check(argvProblem(argv, what, allowEmpty));
export const checkWorkdir = (workdir: string) => check(workdirProblem(workdir));
export const checkEnv = (env: Readonly<Record<string, string>>) => check(envProblem(env));
export const checkTags = (tags: Readonly<Record<string, string>>) => check(tagsProblem(tags));
