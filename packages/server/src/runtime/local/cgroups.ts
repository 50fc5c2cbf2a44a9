/**
 * Per-sandbox cgroups bounding cpu, memory and pids, on cgroup v2 (one unified tree) or
 * v1 (one hierarchy per controller, as on this project's CI machines).
 *
 * The sandbox's pids are bounded twice. Its cgroup holds bubblewrap and the agent, with room
 * for the agent's threads beyond the workload's limit (AGENT_PIDS_ROOM); a child cgroup,
 * `work`, bounds the workload's processes by the sandbox's pids limit. The agent forks every
 * process from one thread (its spawner), which the server moves into `work` once the agent is
 * ready (moveSpawner): a process starts in the cgroup of the thread that forked it, so all the
 * workload's processes start, and stay, in `work`, while the agent's other threads stay out of
 * it. A fork bomb that holds every pid of `work` cannot keep the agent from a thread it needs
 * (the Go runtime aborts a program that cannot start one). A thread can be in a cgroup of its
 * own on v1 (per hierarchy: only the pids one has `work`) and, on v2, in a threaded child (pids
 * is a threaded controller; memory, io and cpu stay on the sandbox's cgroup, which becomes the
 * threaded subtree's root). Where the kernel refuses the threaded child, the sandbox runs
 * without it (`split` false): the agent then shares the workload's limit and reserves its
 * threads at boot, as before.
 */
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { innermostPidOf } from "./proc-status.js";

const ROOT = "/sys/fs/cgroup";
const V1_CONTROLLERS = ["cpu", "memory", "pids"] as const;
const PREFIX = "sbx";
/** The child cgroup bounding the workload's pids (see the top of this file). */
const WORK = "work";

/**
 * Pids the agent's threads (and bubblewrap) may use beyond the workload's limit: the agent
 * starts a thread for each of its goroutines blocked in a long system call (file workers, the
 * spawner, the user thread, closing watches, terminals), 8 when idle; ~35 seen with 80
 * terminals writing through a fork bomb, on a CPU quota.
 */
export const AGENT_PIDS_ROOM = 128;

export interface CgroupLimits {
  readonly cpuLimit?: number | undefined;
  readonly memoryLimitMiB: number;
  readonly pidsLimit: number;
}

export type CgroupVersion = "v1" | "v2";

export function detectCgroupVersion(): CgroupVersion | undefined {
  if (existsSync(join(ROOT, "cgroup.controllers"))) return "v2";
  if (V1_CONTROLLERS.every((c) => existsSync(join(ROOT, c, "cgroup.procs")))) return "v1";
  return undefined;
}

/** What is missing for cgroups, one sentence each. */
export async function cgroupProblems(): Promise<string[]> {
  const version = detectCgroupVersion();
  if (!version) {
    return [
      `no usable cgroup hierarchy: mount cgroup v2 at ${ROOT}, or the v1 controllers ${V1_CONTROLLERS.join(", ")} under ${ROOT}/<controller>`,
    ];
  }
  try {
    const probe = new SandboxCgroup(version, `probe-${process.pid}`);
    await probe.create({ memoryLimitMiB: 64, pidsLimit: 16 });
    await probe.destroy();
    return [];
  } catch (error) {
    return [`cannot create cgroups under ${ROOT} (${(error as Error).message}): run the server as root`];
  }
}

/**
 * Lets the children of the v2 cgroup `dir` use cpu, memory and pids (their limits) and, where
 * the kernel has it, io: with both memory and io on, a sandbox's dirty page cache is its own
 * writeback domain, throttled at a share of its memory limit, instead of piling up in the
 * machine-wide pool until the kernel throttles every writer, the server's output logs and
 * state included. io goes in a write of its own: a write naming a controller the kernel
 * lacks enables none of those it names.
 */
async function enableControllers(dir: string): Promise<void> {
  const control = join(dir, "cgroup.subtree_control");
  await writeFile(control, "+cpu +memory +pids\n", { flag: "a" }).catch(() => {});
  await writeFile(control, "+io\n", { flag: "a" }).catch(() => {});
}

export class SandboxCgroup {
  /**
   * True once create() has made the workload's own pids cgroup (`work`): the agent's spawner
   * must then be moved there before any process starts (moveSpawner).
   */
  split = false;

  constructor(
    readonly version: CgroupVersion,
    public name: string,
    /** Where the cgroup filesystem is mounted (another place only in tests). */
    readonly root = ROOT,
  ) {}

  /** Renames the cgroup (a pre-started sandbox taking on its sandbox id). */
  async rename(name: string): Promise<void> {
    // cgroup v2 renames nothing (EPERM): the cgroup keeps its pool name there, which is still
    // this server's (cleanupCgroups goes by the prefix) and bounds the same processes.
    if (this.version === "v2") return;
    const before = this.dirs;
    this.name = name;
    const after = this.dirs;
    await Promise.all(before.map((dir, i) => rename(dir, after[i] as string)));
  }

  /** Applies limits to a cgroup that already exists (and may hold processes). */
  async setLimits(limits: CgroupLimits): Promise<void> {
    const memory = String(Math.round(limits.memoryLimitMiB * 1024 * 1024));
    if (this.version === "v2") {
      const dir = this.dirs[0] as string;
      await writeFile(join(dir, "memory.max"), memory);
      await this.#setPidsLimit(limits.pidsLimit);
      await writeFile(
        join(dir, "cpu.max"),
        limits.cpuLimit ? `${Math.round(limits.cpuLimit * 100_000)} 100000` : "max 100000",
      );
      return;
    }
    const [cpu, mem] = this.dirs as [string, string, string];
    // memsw must stay >= memory at every step: lift it, set memory, then pin it again.
    await writeFile(join(mem, "memory.memsw.limit_in_bytes"), "-1").catch(() => {});
    await writeFile(join(mem, "memory.limit_in_bytes"), memory);
    await writeFile(join(mem, "memory.memsw.limit_in_bytes"), memory).catch(() => {});
    await this.#setPidsLimit(limits.pidsLimit);
    await writeFile(
      join(cpu, "cpu.cfs_quota_us"),
      limits.cpuLimit ? String(Math.round(limits.cpuLimit * 100_000)) : "-1",
    );
  }

  /** Directories whose cgroup.procs a process must join. */
  get dirs(): string[] {
    return this.version === "v2"
      ? [join(this.root, PREFIX, this.name)]
      : V1_CONTROLLERS.map((c) => join(this.root, c, PREFIX, this.name));
  }

  /** The sandbox's cgroup that bounds pids (v2: its only one; v1: the pids hierarchy's). */
  get pidsDir(): string {
    return this.dirs[this.version === "v2" ? 0 : 2] as string;
  }

  /** The child cgroup bounding the workload's pids (it exists while `split`). */
  get workDir(): string {
    return join(this.pidsDir, WORK);
  }

  /**
   * The workload's pids limit on `work` (plus one: the agent's spawner thread is counted there),
   * and on the sandbox's cgroup that plus the agent's room.
   */
  async #setPidsLimit(pidsLimit: number): Promise<void> {
    await writeFile(join(this.pidsDir, "pids.max"), String(pidsLimit + (this.split ? 1 + AGENT_PIDS_ROOM : 0)));
    if (this.split) await writeFile(join(this.workDir, "pids.max"), String(pidsLimit + 1));
  }

  /**
   * Makes `work` (see the top of this file), or on v2 finds that the kernel refuses it and
   * leaves the sandbox without (`split` false).
   */
  async #makeWork(): Promise<void> {
    await mkdir(this.workDir, { recursive: true });
    if (this.version === "v1") {
      this.split = true;
      return;
    }
    try {
      // A threaded child (its threads' process stays in the sandbox's domain), with pids on.
      await writeFile(join(this.workDir, "cgroup.type"), "threaded");
      await writeFile(join(this.pidsDir, "cgroup.subtree_control"), "+pids\n", { flag: "a" });
      this.split = true;
    } catch {
      await rmdir(this.workDir).catch(() => {});
      this.split = false;
    }
  }

  /**
   * Moves the agent's spawner thread (its id in the sandbox's pid namespace, as the agent said
   * in Ready) into `work`. Only a thread of the agent's own process (`agentPid`, found and
   * checked by the host) is ever moved: a forged id moves nothing else. Throws when there is
   * no such thread: the workload would otherwise start outside `work`, with the agent's room.
   */
  async moveSpawner(agentPid: number, spawnerTid: number): Promise<void> {
    if (!this.split) return;
    const tid =
      Number.isSafeInteger(spawnerTid) && spawnerTid > 0 ? await hostThreadOf(agentPid, spawnerTid) : undefined;
    if (tid === undefined) throw new Error("the sandbox agent named no thread of its own to start processes from");
    // And that thread is in this sandbox's cgroup now: were the agent gone and its id taken
    // by another task meanwhile, that task would be elsewhere (a task starts in its parent's
    // cgroup, and only bubblewrap and the agent are in this one).
    const where = await readFile(`/proc/${agentPid}/task/${tid}/cgroup`, "utf8").catch(() => "");
    if (pidsCgroupOf(where, this.version) !== `/${PREFIX}/${this.name}`) {
      throw new Error("the sandbox agent's spawner thread is not in the sandbox's cgroup");
    }
    await writeFile(join(this.workDir, this.version === "v2" ? "cgroup.threads" : "tasks"), String(tid));
  }

  async create(limits: CgroupLimits): Promise<void> {
    const memory = Math.round(limits.memoryLimitMiB * 1024 * 1024);
    if (this.version === "v2") {
      const parent = join(this.root, PREFIX);
      await mkdir(parent, { recursive: true });
      await enableControllers(this.root);
      await enableControllers(parent);
      const dir = this.dirs[0] as string;
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, "memory.max"), String(memory));
      await writeFile(join(dir, "memory.swap.max"), "0").catch(() => {});
      await this.#makeWork();
      await this.#setPidsLimit(limits.pidsLimit);
      if (limits.cpuLimit) await writeFile(join(dir, "cpu.max"), `${Math.round(limits.cpuLimit * 100_000)} 100000`);
      return;
    }
    const [cpu, mem] = this.dirs as [string, string, string];
    await Promise.all(this.dirs.map((d) => mkdir(d, { recursive: true })));
    await writeFile(join(mem, "memory.limit_in_bytes"), String(memory));
    // Without a swap limit an allocation bomb would swap instead of being OOM-killed.
    await writeFile(join(mem, "memory.memsw.limit_in_bytes"), String(memory)).catch(() => {});
    await writeFile(join(mem, "memory.swappiness"), "0").catch(() => {});
    await this.#makeWork();
    await this.#setPidsLimit(limits.pidsLimit);
    if (limits.cpuLimit) {
      await writeFile(join(cpu, "cpu.cfs_period_us"), "100000");
      await writeFile(join(cpu, "cpu.cfs_quota_us"), String(Math.round(limits.cpuLimit * 100_000)));
    }
  }

  /**
   * Pids currently in the sandbox's cgroup, `work` included (a v2 thread root lists its
   * threaded children's too; their own list cannot be read). Throws when a list that exists
   * cannot be read: an unread list must never pass for an empty one.
   */
  async pids(): Promise<number[]> {
    const lists = await Promise.all(
      [this.pidsDir, this.workDir].map((dir) =>
        readFile(join(dir, "cgroup.procs"), "utf8").catch((error: NodeJS.ErrnoException) => {
          if (error.code === "ENOENT" || error.code === "EOPNOTSUPP") return "";
          throw error;
        }),
      ),
    );
    return [...new Set(lists.join("\n").split("\n").filter(Boolean).map(Number))];
  }

  /** True if the OOM killer acted in this cgroup. */
  async oomKilled(): Promise<boolean> {
    const file =
      this.version === "v2"
        ? join(this.dirs[0] as string, "memory.events")
        : join(this.dirs[1] as string, "memory.oom_control");
    const text = await readFile(file, "utf8").catch(() => "");
    const match = /oom_kill (\d+)/.exec(text);
    return match ? Number(match[1]) > 0 : false;
  }

  /**
   * Kills every process in the cgroup (setsid daemons included) and removes it. True when no
   * process was left in it: only then may a tree the sandbox could write be removed recursively.
   */
  async destroy(): Promise<boolean> {
    if (this.version === "v2") {
      await writeFile(join(this.dirs[0] as string, "cgroup.kill"), "1").catch(() => {});
    }
    let emptied = false;
    for (let attempt = 0; attempt < 100; attempt++) {
      const pids = await this.pids().catch(() => undefined);
      if (pids === undefined) {
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      if (pids.length === 0) {
        emptied = true;
        break;
      }
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    // `work` first: a cgroup with a child cannot be removed.
    for (const dir of [this.workDir, ...this.dirs]) {
      for (let attempt = 0; attempt < 50; attempt++) {
        try {
          await rmdir(dir);
          break;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === "ENOENT") break;
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    }
    return emptied;
  }
}

/**
 * Removes the cgroups (killing what is in them) whose names start with `instance` + "-":
 * those of this server's data dir, never another server's on the same machine. True when every
 * one of them was emptied.
 */
export async function cleanupCgroups(version: CgroupVersion, instance: string): Promise<boolean> {
  const parents = version === "v2" ? [join(ROOT, PREFIX)] : V1_CONTROLLERS.map((c) => join(ROOT, c, PREFIX));
  const names = new Set<string>();
  for (const parent of parents) {
    for (const entry of await readdir(parent, { withFileTypes: true }).catch(() => [])) {
      if (entry.isDirectory() && entry.name.startsWith(`${instance}-`)) names.add(entry.name);
    }
  }
  const emptied = await Promise.all([...names].map((name) => new SandboxCgroup(version, name).destroy()));
  return emptied.every(Boolean);
}

/**
 * The path, from its hierarchy's root, of the pids cgroup in a /proc/<pid>/cgroup text: v2's
 * one line, or v1's pids hierarchy's.
 */
function pidsCgroupOf(text: string, version: CgroupVersion): string | undefined {
  for (const line of text.split("\n")) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (version === "v2" ? line.startsWith("0::") : controllers?.split(",").includes("pids")) return path;
  }
  return undefined;
}

/**
 * The host id of the thread of process `pid` whose id in its innermost pid namespace is
 * `nsTid`, looked up among that process's own threads only.
 */
async function hostThreadOf(pid: number, nsTid: number): Promise<number | undefined> {
  const tasks = await readdir(`/proc/${pid}/task`).catch(() => [] as string[]);
  for (const task of tasks) {
    if (!/^\d+$/.test(task)) continue;
    const status = await readFile(`/proc/${pid}/task/${task}/status`, "utf8").catch(() => "");
    if (innermostPidOf(status) === String(nsTid)) return Number(task);
  }
  return undefined;
}
