/**
 * A sandbox's readiness probe: tried every interval from its start until it passes once or
 * the sandbox ends. A TCP probe asks the driver (`probeTcp`: the path tunnels take); an exec
 * probe runs its command through the driver's `exec`, as any process (not recorded as one of
 * the sandbox's processes), ready at exit 0. `WaitUntilReady` and `GetTunnels` wait on it.
 */
import { DEFAULT_PROBE_INTERVAL_MS, type Probe } from "@sbx/proto";
import { Notifier } from "../notifier.js";
import type { RuntimeSandbox } from "./runtime-driver.js";
import { unrefTimer } from "./timers.js";

/** How long one try may take: a command still running then is killed, a connection dropped. */
export const PROBE_TRY_TIMEOUT_MS = 10_000;

export class Readiness {
  /** When the probe first passed (ms since the epoch); 0 until then. */
  readyAtMs = 0;
  readonly changed = new Notifier();
  readonly #stop = new AbortController();

  /** Without a probe a sandbox is ready as soon as it runs. */
  constructor(readonly probe: Probe | undefined) {}

  get ready(): boolean {
    return this.readyAtMs > 0;
  }

  /** Marks the sandbox ready at once (no probe) or starts the probe's loop. */
  start(runtime: RuntimeSandbox): void {
    if (this.probe) void this.#loop(runtime, this.probe);
    else this.#pass();
  }

  /** The sandbox ended: no more tries; waiters wake (they see it finished). */
  stop(): void {
    this.#stop.abort();
    this.changed.notify();
  }

  #pass(): void {
    if (this.ready) return;
    this.readyAtMs = Date.now();
    this.changed.notify();
  }

  async #loop(runtime: RuntimeSandbox, probe: Probe): Promise<void> {
    const intervalMs = probe.intervalMs || DEFAULT_PROBE_INTERVAL_MS;
    const stop = this.#stop.signal;
    while (!stop.aborted) {
      const tryTimeout = AbortSignal.timeout(PROBE_TRY_TIMEOUT_MS);
      const signal = AbortSignal.any([stop, tryTimeout]);
      let passed = false;
      try {
        passed = await tryProbe(runtime, probe, signal);
      } catch {
        // A try that fails (the sandbox ending under it, a driver error) is a try that did not pass.
      }
      if (passed && !stop.aborted) return this.#pass();
      await new Promise<void>((resolve) => {
        const timer = unrefTimer(resolve, intervalMs);
        stop.addEventListener(
          "abort",
          () => {
            clearTimeout(timer);
            resolve();
          },
          { once: true },
        );
      });
    }
  }
}

async function tryProbe(runtime: RuntimeSandbox, probe: Probe, signal: AbortSignal): Promise<boolean> {
  const kind = probe.kind;
  if (kind.case === "tcpPort") {
    // The create was refused when the driver has no TCP probe (networkProblem).
    return runtime.probeTcp ? runtime.probeTcp(kind.value, signal) : false;
  }
  if (kind.case !== "exec") return false;
  const process = await runtime.exec({ argv: kind.value.argv, env: {}, pty: false });
  // Its output is read and dropped (a driver delivers all of it before `exit`); a try past
  // its time is killed.
  process.onStdout(() => {});
  process.onStderr(() => {});
  const kill = () => process.signal(9);
  signal.addEventListener("abort", kill, { once: true });
  try {
    void process.closeStdin().catch(() => {});
    const exit = await process.exit;
    return !signal.aborted && exit.kind === "exited" && exit.code === 0;
  } finally {
    signal.removeEventListener("abort", kill);
  }
}
