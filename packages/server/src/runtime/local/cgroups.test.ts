// Cgroup settings, written to a stand-in for /sys/fs/cgroup (a plain directory): which files a
// v2 sandbox cgroup gets, and what it asks of its parents.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AGENT_PIDS_ROOM, type CgroupVersion, detectCgroupVersion, SandboxCgroup } from "./cgroups.js";

// A stand-in for /sys/fs/cgroup per test (the tests on the host's own cgroups leave it unused).
let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "sbx-cgroupfs-"));
});
afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

describe("SandboxCgroup (v2)", () => {
  const enabled = (dir: string) =>
    readFileSync(join(dir, "cgroup.subtree_control"), "utf8").split(/\s+/).filter(Boolean);

  it("enables io beside cpu, memory and pids, in a write of its own", async () => {
    await new SandboxCgroup("v2", "sb-1", root).create({ memoryLimitMiB: 64, pidsLimit: 16 });
    // io on with memory: each sandbox's dirty pages are throttled against its own memory.
    for (const dir of [root, join(root, "sbx")]) {
      expect(enabled(dir)).toEqual(["+cpu", "+memory", "+pids", "+io"]);
    }
  });

  it("sets the memory, swap and pids limits", async () => {
    await new SandboxCgroup("v2", "sb-2", root).create({ memoryLimitMiB: 64, pidsLimit: 16, cpuLimit: 0.5 });
    const read = (file: string) => readFileSync(join(root, "sbx", "sb-2", file), "utf8");
    expect(read("memory.max")).toBe(String(64 * 1024 * 1024));
    expect(read("memory.swap.max")).toBe("0");
    expect(read("cpu.max")).toBe("50000 100000");
  });

  it("bounds the workload's pids in a threaded child, the agent's room on the sandbox's cgroup", async () => {
    const cgroup = new SandboxCgroup("v2", "sb-3", root);
    await cgroup.create({ memoryLimitMiB: 64, pidsLimit: 16 });
    const read = (file: string) => readFileSync(join(root, "sbx", "sb-3", file), "utf8");
    expect(cgroup.split).toBe(true);
    expect(cgroup.workDir).toBe(join(root, "sbx", "sb-3", "work"));
    expect(read("work/cgroup.type")).toBe("threaded");
    expect(enabled(join(root, "sbx", "sb-3"))).toEqual(["+pids"]);
    // One more than the limit: the agent's spawner thread is counted there.
    expect(read("work/pids.max")).toBe("17");
    expect(read("pids.max")).toBe(String(17 + AGENT_PIDS_ROOM));
    // New limits (a pre-started sandbox adopted) keep the same shape.
    await cgroup.setLimits({ memoryLimitMiB: 32, pidsLimit: 100 });
    expect(read("work/pids.max")).toBe("101");
    expect(read("pids.max")).toBe(String(101 + AGENT_PIDS_ROOM));
  });

  it("moves no thread that is not the agent's own, nor one outside the sandbox's cgroup", async () => {
    const cgroup = new SandboxCgroup("v2", "sb-4", root);
    await cgroup.create({ memoryLimitMiB: 64, pidsLimit: 16 });
    // An id that is no thread of that process (the server's parent's, say) moves nothing.
    for (const forged of [process.ppid, 0, -1, 2 ** 40]) {
      await expect(cgroup.moveSpawner(process.pid, forged)).rejects.toThrow(/no thread of its own/);
    }
    // This test's process stands in for the agent (no pid namespace: its innermost id is the
    // host's): a thread of it, but not in the sandbox's cgroup.
    await expect(cgroup.moveSpawner(process.pid, process.pid)).rejects.toThrow(/not in the sandbox's cgroup/);
    expect(readFileSync(join(cgroup.workDir, "pids.max"), "utf8")).toBe("17");
    expect(existsSync(join(cgroup.workDir, "cgroup.threads"))).toBe(false);
  });

  it("keeps its name on a rename (cgroup v2 renames nothing)", async () => {
    const cgroup = new SandboxCgroup("v2", "pool-1", root);
    await cgroup.create({ memoryLimitMiB: 64, pidsLimit: 16 });
    await cgroup.rename("sb-5");
    expect(cgroup.dirs).toEqual([join(root, "sbx", "pool-1")]);
    expect(existsSync(join(root, "sbx", "pool-1", "work"))).toBe(true);
  });
});

describe("SandboxCgroup (v1)", () => {
  it("bounds the workload's pids in a child of the pids hierarchy only", async () => {
    const cgroup = new SandboxCgroup("v1", "sb-1", root);
    await cgroup.create({ memoryLimitMiB: 64, pidsLimit: 16 });
    expect(cgroup.split).toBe(true);
    expect(readFileSync(join(root, "pids", "sbx", "sb-1", "work", "pids.max"), "utf8")).toBe("17");
    expect(readFileSync(join(root, "pids", "sbx", "sb-1", "pids.max"), "utf8")).toBe(String(17 + AGENT_PIDS_ROOM));
    expect(existsSync(join(root, "memory", "sbx", "sb-1", "work"))).toBe(false);
    expect(existsSync(join(root, "cpu", "sbx", "sb-1", "work"))).toBe(false);
  });
});

// On this machine's own cgroups (root): a process standing in for the agent joins a sandbox's
// cgroup, its thread is moved into `work`, what it forks then starts there, and destroy()
// removes both.
const realCgroups = process.getuid?.() === 0 ? detectCgroupVersion() : undefined;
describe.runIf(realCgroups)("SandboxCgroup on the host's cgroups", () => {
  it("moves the spawner into work, where its children start, and destroy() kills and removes all", async () => {
    const version = realCgroups as CgroupVersion;
    const cgroup = new SandboxCgroup(version, `test-${process.pid}-spawner`);
    await cgroup.create({ memoryLimitMiB: 64, pidsLimit: 8 });
    // sh joins every hierarchy's cgroup, then waits for a line before starting a child.
    const stand = spawn(
      "sh",
      [
        "-c",
        'for d in "$@"; do echo $$ > "$d/cgroup.procs"; done; echo joined; read x; sleep 600 & echo $!; wait',
        "sh",
        ...cgroup.dirs,
      ],
      {
        stdio: ["pipe", "pipe", "inherit"],
      },
    );
    try {
      const lines = stand.stdout.setEncoding("utf8")[Symbol.asyncIterator]();
      expect(String((await lines.next()).value)).toContain("joined");
      const pid = stand.pid as number;
      await cgroup.moveSpawner(pid, pid);
      const pidsLine = (p: number) =>
        readFileSync(`/proc/${p}/cgroup`, "utf8")
          .split("\n")
          .find((line) => (version === "v2" ? line.startsWith("0::") : /^\d+:[^:]*\bpids\b/.test(line)));
      expect(pidsLine(pid)).toMatch(/\/work$/);
      stand.stdin.write("go\n");
      const child = Number(String((await lines.next()).value).trim());
      expect(pidsLine(child)).toMatch(new RegExp(`/sbx/test-${process.pid}-spawner/work$`));
      expect(await cgroup.pids()).toEqual(expect.arrayContaining([pid, child]));
    } finally {
      expect(await cgroup.destroy()).toBe(true);
      stand.kill("SIGKILL");
    }
    expect(existsSync(cgroup.workDir)).toBe(false);
    expect(existsSync(cgroup.pidsDir)).toBe(false);
  });
});
