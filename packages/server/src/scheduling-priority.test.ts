// The server's CPU priority over its sandboxes (scheduling-priority.ts): `sbx server` raises
// its own (default nice -10) and its sandboxes keep the one it started with.
import { type ChildProcess, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { getPriority, tmpdir } from "node:os";
import { join } from "node:path";
import { SandboxClient } from "@sbx/node";
import { afterAll, describe, expect, it } from "vitest";
import { inRootCpuCgroup, niceProblem } from "./scheduling-priority.js";
import { realServerAvailable, startCliServer } from "./test-support.js";

const available = await realServerAvailable();

/** Field 19 of /proc/PID/stat (after the command's parentheses): the nice value. */
const niceOfStat = (stat: string) => Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);

describe("which CPU cgroup autogroups apply in", () => {
  it("is the root one only", () => {
    expect(inRootCpuCgroup("4:memory:/a\n2:cpu,cpuacct:/\n0::/\n")).toBe(true);
    expect(inRootCpuCgroup("2:cpu,cpuacct:/system.slice/sbx.service\n0::/\n")).toBe(false);
    expect(inRootCpuCgroup("0::/\n")).toBe(true);
    expect(inRootCpuCgroup("0::/system.slice/sbx.service\n")).toBe(false);
  });

  it("takes nice values Linux takes", () => {
    expect(niceProblem(-20)).toBeUndefined();
    expect(niceProblem(19)).toBeUndefined();
    expect(niceProblem(-21)).toBeDefined();
    expect(niceProblem(20)).toBeDefined();
    expect(niceProblem(1.5)).toBeDefined();
  });
});

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM"); // a clean stop also puts the session's autogroup back
  await exited;
}

if (available) {
  describe("sbx server's CPU priority", () => {
    const dirs: string[] = [];
    afterAll(() => {
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    });
    const ours = getPriority(0);

    it("raises the server above its sandboxes, which keep the priority it started with", async () => {
      expect(ours).toBeGreaterThan(-10); // what the test can tell apart
      const dataDir = mkdtempSync(join(tmpdir(), "sbx-nice-"));
      dirs.push(dataDir);
      const { child, url } = await startCliServer(dataDir);
      try {
        const pid = child.pid as number;
        // Every thread of the server, its event loop's first.
        const tasks = readFileSync(`/proc/${pid}/stat`, "utf8");
        expect(niceOfStat(tasks)).toBe(-10);
        await using client = new SandboxClient({ endpoint: url, token: "t" });
        // More than the warm pool holds, so some are launched after the server raised itself.
        const sandboxes = await Promise.all([1, 2, 3, 4].map(() => client.sandboxes.create()));
        await using _cleanup = {
          [Symbol.asyncDispose]: () => Promise.all(sandboxes.map((s) => s.terminate())).then(() => {}),
        };
        for (const each of sandboxes) expect(niceOfStat((await each.run("cat /proc/1/stat")).stdout)).toBe(ours);
        // The launchers (bwrap's monitors, the server's children) too.
        const launchers = execFileSync("pgrep", ["-P", String(pid), "-x", "bwrap"], { encoding: "utf8" })
          .trim()
          .split("\n");
        expect(launchers.length).toBeGreaterThanOrEqual(4);
        for (const launcher of launchers) expect(niceOfStat(readFileSync(`/proc/${launcher}/stat`, "utf8"))).toBe(ours);
        const sb = sandboxes[3] as (typeof sandboxes)[number];
        // The agent (pid 1), a process it starts, and what that one starts in turn.
        const result = await sb.run("cat /proc/1/stat; cat /proc/self/stat; sh -c 'cat /proc/self/stat'");
        const stats = result.stdout.trim().split("\n");
        expect(stats).toHaveLength(3);
        for (const stat of stats) expect(niceOfStat(stat)).toBe(ours);
        // Nothing sandboxed can take the server's priority for itself (no CAP_SYS_NICE).
        // (GNU nice warns and runs the command at the priority it has.)
        const raised = await sb.run("nice -n -5 cat /proc/self/stat");
        expect(niceOfStat(raised.stdout)).toBe(ours);
        expect(raised.stderr).toMatch(/cannot set niceness/);
      } finally {
        await stop(child);
      }
    });

    it("leaves its priority alone when told so", async () => {
      const dataDir = mkdtempSync(join(tmpdir(), "sbx-nice-"));
      dirs.push(dataDir);
      const { child, url } = await startCliServer(dataDir, { args: ["--nice", String(ours)] });
      try {
        expect(niceOfStat(readFileSync(`/proc/${child.pid}/stat`, "utf8"))).toBe(ours);
        await using client = new SandboxClient({ endpoint: url, token: "t" });
        await using sb = await client.sandboxes.create();
        expect(niceOfStat((await sb.run("cat /proc/1/stat")).stdout)).toBe(ours);
      } finally {
        await stop(child);
      }
    });
  });
}
