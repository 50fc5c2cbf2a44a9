// Cgroup settings, written to a stand-in for /sys/fs/cgroup (a plain directory): which files a
// v2 sandbox cgroup gets, and what it asks of its parents.
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SandboxCgroup } from "./cgroups.js";

describe("SandboxCgroup (v2)", () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), "sbx-cgroupfs-"));
  });
  afterEach(() => {
    rmSync(root, { recursive: true, force: true });
  });

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
    expect(read("pids.max")).toBe("16");
    expect(read("cpu.max")).toBe("50000 100000");
  });
});
