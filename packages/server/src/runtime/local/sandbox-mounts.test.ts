// Each sandbox's launch namespace (kept for its life by bwrap's own process on the host) lets
// go of every other sandbox's disk and root: a copy of them per sandbox grew with the square of
// the number held (~1 MiB of kernel memory each at 1,000). The sandboxes dir is a mount of its
// own while the runtime runs, and is gone when it closes (the data dir can be removed).
import { existsSync, readdirSync, readFileSync, realpathSync } from "node:fs";
import { join } from "node:path";
import { BLOCKED_NETWORK, type RuntimeSandbox } from "@sbx/server-kit";
import { describe, expect, it } from "vitest";
import { realServerAvailable, useLocalRuntime } from "../../test-support.js";
import { isMountPoint } from "./sandbox-mounts.js";

const available = await realServerAvailable("sandbox mounts (local runtime)");

/** Mount points (field 5 of mountinfo) of a process's mount namespace. */
const mountPoints = (pid: number) =>
  readFileSync(`/proc/${pid}/mountinfo`, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => line.split(" ")[4] ?? "");

/** The host processes named bwrap in the sandbox's cgroup (its launch's own process). */
function bwrapOf(sandbox: RuntimeSandbox): number {
  const cgroups = existsSync("/sys/fs/cgroup/cgroup.controllers") ? "/sys/fs/cgroup/sbx" : "/sys/fs/cgroup/pids/sbx";
  const procs = readdirSync(cgroups)
    .filter((name) => name.endsWith(`-${sandbox.id}`))
    .flatMap((name) => readFileSync(join(cgroups, name, "cgroup.procs"), "utf8").split("\n"))
    .filter(Boolean)
    .map(Number);
  const bwrap = procs.find((pid) => readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "bwrap");
  if (!bwrap) throw new Error(`no bwrap process in ${sandbox.id}'s cgroup`);
  return bwrap;
}

if (available) {
  describe("sandbox mounts (local runtime)", () => {
    const local = useLocalRuntime("sbx-mounts-");

    it("a sandbox's launch holds none of the other sandboxes' mounts, and the runtime's mount goes at close", async () => {
      const sandboxesDir = join(realpathSync(local.dataDir), "runtime", "sandboxes");
      const sandboxes: RuntimeSandbox[] = [];
      for (const id of ["m-1", "m-2", "m-3"]) {
        sandboxes.push(await local.runtime.createSandbox({ id, env: {}, network: BLOCKED_NETWORK }));
      }
      // The host sees every sandbox's disk and root under the sandboxes dir.
      const host = mountPoints(process.pid).filter((m) => m.startsWith(`${sandboxesDir}/`));
      for (const id of ["m-1", "m-2", "m-3"]) {
        expect(host).toContain(join(sandboxesDir, id, "disk"));
        expect(host).toContain(join(sandboxesDir, id, "rootfs"));
      }
      expect(await isMountPoint(sandboxesDir)).toBe(true);
      // The last one's launch started after the others were mounted, and holds none of them
      // (nor its own: its root is bound elsewhere, on the launch root).
      for (const sandbox of sandboxes) {
        const held = mountPoints(bwrapOf(sandbox)).filter((m) => m.startsWith(sandboxesDir));
        expect(held, sandbox.id).toEqual([]);
      }
      // And it runs.
      const last = sandboxes[2] as RuntimeSandbox;
      const p = await last.exec({ argv: ["true"], env: {}, pty: false });
      p.onStderr(() => {});
      expect(await p.exit).toEqual({ kind: "exited", code: 0 });
      await Promise.all(sandboxes.map((s) => s.destroy()));
      await local.runtime.close();
      expect(await isMountPoint(sandboxesDir)).toBe(false);
    });
  });
}
