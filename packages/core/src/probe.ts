import { InvalidError } from "./errors.js";
import { validateArgv } from "./validation.js";

/** A readiness check for `waitUntilReady`: a TCP port accepting connections, or a command exiting 0. */
export class Probe {
  private constructor(
    readonly kind: "tcp" | "exec",
    readonly port: number | undefined,
    readonly argv: readonly string[] | undefined,
    readonly intervalMs: number,
  ) {}

  static tcp(port: number, options: { intervalMs?: number } = {}): Probe {
    if (!Number.isInteger(port) || port < 1 || port > 65_535) throw new InvalidError(`invalid probe port ${port}`);
    return new Probe("tcp", port, undefined, options.intervalMs ?? 100);
  }

  static exec(argv: string[], options: { intervalMs?: number } = {}): Probe {
    return new Probe("exec", undefined, validateArgv(argv, "probe command"), options.intervalMs ?? 100);
  }
}
