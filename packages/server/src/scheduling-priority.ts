/**
 * The server's CPU priority over its sandboxes. Every call on every sandbox passes through the
 * server's one event loop: when sandboxes keep the CPUs busy (spinners, fork bombs, floods),
 * a server waiting its turn behind them delays every quiet sandbox's calls with it (measured:
 * a neighbour's `run("echo ok")` p99 451 ms at nice 0 beside all attacks at once, 144 ms at
 * -10; see BENCHMARKS.md "Noisy neighbours"). So the server raises its own priority at start
 * (`sbx server --nice`, default -10), and its sandboxes run at the priority it had before
 * (the runtime resets each launch and each sandbox's first process: see local-sandbox.ts).
 *
 * Two knobs, because Linux has two: the nice value of each of the server's threads, and, when
 * the kernel groups tasks by session (sched_autogroup, on by default in many distributions)
 * and the server sits in the root CPU cgroup, its session's autogroup, whose nice value is
 * what weighs against the sandboxes' cgroup. The autogroup is the whole session's: run from a
 * terminal, the terminal's other programs share the boost (systemd gives each service a
 * session of its own). Sandboxes are never in the root cgroup, so no autogroup applies to
 * them. On cgroup v2 hosts where the server runs in a service's cgroup, the weight that counts
 * is that cgroup's cpu.weight against the sandboxes' `sbx` cgroup: the operator's to set.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { getPriority, setPriority } from "node:os";

/** What `--nice` defaults to: well above a sandbox's 0, short of what system daemons use. */
export const DEFAULT_SERVER_NICE = -10;

export interface SchedulingPriority {
  /** The nice value the server had before: the one its sandboxes run at. */
  readonly original: number;
  /** The server's nice value now. */
  readonly nice: number;
  /** The autogroup's nice value now, when there is one and it was raised. */
  readonly autogroupNice?: number;
  /** What could not be raised, and why. */
  readonly problem?: string;
  /** Puts everything back as it was (at close). */
  restore(): void;
}

/** Nice values Linux takes. */
export function niceProblem(nice: number): string | undefined {
  return Number.isInteger(nice) && nice >= -20 && nice <= 19 ? undefined : `must be a whole number from -20 to 19`;
}

export function raiseSchedulingPriority(nice: number): SchedulingPriority {
  const problem = niceProblem(nice);
  if (problem) throw new Error(`nice ${problem}, got ${nice}`);
  const original = getPriority(0);
  const problems: string[] = [];
  // Only ever raised: a server started at a higher priority than asked keeps it.
  // Every thread the process has now (libuv's pool, V8's helpers); later ones inherit.
  const threads = nice < original ? ownThreads() : [];
  for (const tid of threads) {
    try {
      setPriority(tid, nice);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ESRCH") problems.push(`thread ${tid}: ${messageOf(error)}`);
    }
  }
  const autogroup = readAutogroup();
  let autogroupNice: number | undefined;
  if (autogroup !== undefined && autogroup.nice > nice && nice < original) {
    try {
      writeFileSync("/proc/self/autogroup", String(nice));
      autogroupNice = nice;
    } catch (error) {
      problems.push(`autogroup: ${messageOf(error)}`);
    }
  }
  return {
    original,
    nice: getPriority(0),
    ...(autogroupNice !== undefined ? { autogroupNice } : {}),
    ...(problems.length > 0 ? { problem: problems.join("; ") } : {}),
    restore() {
      for (const tid of ownThreads()) {
        try {
          setPriority(tid, original);
        } catch {
          // a thread that ended
        }
      }
      if (autogroupNice !== undefined && autogroup) {
        try {
          writeFileSync("/proc/self/autogroup", String(autogroup.nice));
        } catch {
          // nothing more to do at close
        }
      }
    },
  };
}

/**
 * Gives a process the priority the sandboxes run at (a launcher, or a sandbox's first
 * process before anything sandboxed runs: everything in the sandbox descends from it).
 * A process already gone is no error.
 */
export function lowerToSandboxPriority(pid: number, nice: number): void {
  try {
    setPriority(pid, nice);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
  }
}

function ownThreads(): number[] {
  try {
    return readdirSync("/proc/self/task").map(Number).filter(Number.isSafeInteger);
  } catch {
    return [0];
  }
}

/** The session's autogroup, when the kernel groups by session and this process is in the root CPU cgroup. */
function readAutogroup(): { nice: number } | undefined {
  try {
    if (readFileSync("/proc/sys/kernel/sched_autogroup_enabled", "utf8").trim() !== "1") return undefined;
    if (!inRootCpuCgroup(readFileSync("/proc/self/cgroup", "utf8"))) return undefined;
    const match = / nice (-?\d+)/.exec(readFileSync("/proc/self/autogroup", "utf8"));
    return match ? { nice: Number(match[1]) } : undefined;
  } catch {
    return undefined;
  }
}

/** Autogroups apply only to tasks of the root task group: the cpu controller's root (v1), or the unified root (v2). */
export function inRootCpuCgroup(procSelfCgroup: string): boolean {
  const lines = procSelfCgroup.split("\n").filter(Boolean);
  const v1 = lines.find((line) => line.split(":")[1]?.split(",").includes("cpu"));
  if (v1) return v1.split(":")[2] === "/";
  const v2 = lines.find((line) => line.startsWith("0::"));
  return v2 === undefined || v2 === "0::/";
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
