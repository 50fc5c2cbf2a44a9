import { DEFAULT_PROBE_INTERVAL_MS, portProblem, probeIntervalProblem } from "@sbx/proto";
import { InvalidError } from "./errors.js";
import { validateArgv } from "./validation.js";

/**
 * A readiness check for `waitUntilReady`: a TCP port accepting connections, or a command
 * exiting 0, tried every `intervalMs` (default 100, at most 60 000). Bad input is an
 * `InvalidError` here, before any request.
 */
export class Probe {
  private constructor(
    readonly kind: "tcp" | "exec",
    readonly port: number | undefined,
    readonly argv: readonly string[] | undefined,
    readonly intervalMs: number,
  ) {}

  /**
   * Ready once something in the sandbox accepts a TCP connection on `port` (listening on
   * 0.0.0.0 or ::, as tunnels reach it). Works on the fake (its port registry); the sbx server
   * refuses it with `UnsupportedError` until its per-sandbox network lands.
   */
  static tcp(port: number, options: { intervalMs?: number } = {}): Probe {
    const problem = portProblem(port, "probe port");
    if (problem) throw new InvalidError(problem);
    return new Probe("tcp", port, undefined, intervalOf(options));
  }

  /** Ready once `argv` exits 0 (run like `exec`, each try bounded). Works on every target. */
  static exec(argv: string[], options: { intervalMs?: number } = {}): Probe {
    return new Probe("exec", undefined, validateArgv(argv, "probe command"), intervalOf(options));
  }
}

function intervalOf(options: { intervalMs?: number }): number {
  const ms = options?.intervalMs ?? DEFAULT_PROBE_INTERVAL_MS;
  const problem = ms === 0 ? "invalid probe interval 0: it must be positive" : probeIntervalProblem(ms);
  if (problem) throw new InvalidError(problem);
  return ms;
}
