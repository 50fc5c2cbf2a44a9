/**
 * Per-sandbox cgroups bounding cpu, memory and pids, on cgroup v2 (one unified tree) or
 * v1 (one hierarchy per controller, as on this project's CI machines).
 */
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rename, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

const ROOT = "/sys/fs/cgroup";
const V1_CONTROLLERS = ["cpu", "memory", "pids"] as const;
const PREFIX = "sbx";

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
  constructor(
    readonly version: CgroupVersion,
    public name: string,
    /** Where the cgroup filesystem is mounted (another place only in tests). */
    readonly root = ROOT,
  ) {}

  /** Renames the cgroup (a pre-started sandbox taking on its sandbox id). */
  async rename(name: string): Promise<void> {
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
      await writeFile(join(dir, "pids.max"), String(limits.pidsLimit));
      await writeFile(
        join(dir, "cpu.max"),
        limits.cpuLimit ? `${Math.round(limits.cpuLimit * 100_000)} 100000` : "max 100000",
      );
      return;
    }
    const [cpu, mem, pids] = this.dirs as [string, string, string];
    // memsw must stay >= memory at every step: lift it, set memory, then pin it again.
    await writeFile(join(mem, "memory.memsw.limit_in_bytes"), "-1").catch(() => {});
    await writeFile(join(mem, "memory.limit_in_bytes"), memory);
    await writeFile(join(mem, "memory.memsw.limit_in_bytes"), memory).catch(() => {});
    await writeFile(join(pids, "pids.max"), String(limits.pidsLimit));
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
      await writeFile(join(dir, "pids.max"), String(limits.pidsLimit));
      if (limits.cpuLimit) await writeFile(join(dir, "cpu.max"), `${Math.round(limits.cpuLimit * 100_000)} 100000`);
      return;
    }
    const [cpu, mem, pids] = this.dirs as [string, string, string];
    await Promise.all(this.dirs.map((d) => mkdir(d, { recursive: true })));
    await writeFile(join(mem, "memory.limit_in_bytes"), String(memory));
    // Without a swap limit an allocation bomb would swap instead of being OOM-killed.
    await writeFile(join(mem, "memory.memsw.limit_in_bytes"), String(memory)).catch(() => {});
    await writeFile(join(mem, "memory.swappiness"), "0").catch(() => {});
    await writeFile(join(pids, "pids.max"), String(limits.pidsLimit));
    if (limits.cpuLimit) {
      await writeFile(join(cpu, "cpu.cfs_period_us"), "100000");
      await writeFile(join(cpu, "cpu.cfs_quota_us"), String(Math.round(limits.cpuLimit * 100_000)));
    }
  }

  /** Pids currently in the sandbox's cgroup. */
  async pids(): Promise<number[]> {
    const text = await readFile(join(this.dirs[this.version === "v2" ? 0 : 2] as string, "cgroup.procs"), "utf8").catch(
      () => "",
    );
    return text.split("\n").filter(Boolean).map(Number);
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
      const pids = await this.pids();
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
    for (const dir of this.dirs) {
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
