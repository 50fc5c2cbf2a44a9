// A compromised agent: whatever it writes on its event pipe must cost the server nothing lasting
// (no descriptor, no unbounded memory). Forged here from the host, as root, through the real
// agent's own event pipe (/proc/<agent>/fd/<n>), into a real sandbox of the local runtime.
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { EventJson } from "@sbx/proto/agent";
import { BLOCKED_NETWORK, type RuntimeWatchEvent } from "@sbx/server-kit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { realServerAvailable } from "../../test-support.js";
import { createLocalRuntime } from "./index.js";

const available = await realServerAvailable();

/** The host pid of a sandbox's agent (/.sbx/agent, in its cgroup: <data dir tag>-<id>). */
function agentPid(id: string): number {
  const parent = readdirSync("/sys/fs/cgroup").includes("cgroup.controllers")
    ? "/sys/fs/cgroup/sbx"
    : "/sys/fs/cgroup/pids/sbx";
  for (const cgroup of readdirSync(parent).filter((entry) => entry.endsWith(`-${id}`))) {
    for (const pid of readFileSync(join(parent, cgroup, "cgroup.procs"), "utf8")
      .split("\n")
      .filter(Boolean)) {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0] === "/.sbx/agent") return Number(pid);
    }
  }
  throw new Error(`no agent in ${id}`);
}

/** The agent's descriptors whose links match `pattern`. */
function agentFds(agent: number, pattern: RegExp): number[] {
  return readdirSync(`/proc/${agent}/fd`)
    .filter((fd) => {
      try {
        return pattern.test(readlinkSync(`/proc/${agent}/fd/${fd}`));
      } catch {
        return false; // closed meanwhile
      }
    })
    .map(Number);
}

/**
 * Writes event lines into the agent's own event pipe, as the agent would (off the event loop:
 * the reader is this very process).
 */
async function forge(agent: number, events: readonly EventJson[]): Promise<void> {
  const [pipe] = agentFds(agent, /events \(deleted\)$/);
  await writeFile(`/proc/${agent}/fd/${pipe}`, events.map((e) => `${JSON.stringify(e)}\n`).join(""));
}

const serverFds = () => readdirSync("/proc/self/fd").length;

if (available) {
  describe("events forged by a compromised agent (real sandbox)", () => {
    const dataDir = mkdtempSync(join(tmpdir(), "sbx-forged-events-"));
    let runtime: ReturnType<typeof createLocalRuntime>;
    beforeAll(async () => {
      runtime = createLocalRuntime({ dataDir, warmPoolSize: 0 });
      await runtime.cleanupLeftovers();
    });
    afterAll(async () => {
      await runtime?.close();
      rmSync(dataDir, { recursive: true, force: true });
    });

    it("a second Started for a running process opens nothing more (each would cost the server its pipes)", async () => {
      const sb = await runtime.createSandbox({ id: "forged-started", env: {}, network: BLOCKED_NETWORK });
      try {
        const agent = agentPid(sb.id);
        const pipesBefore = agentFds(agent, /^pipe:/);
        // A terminal command (exec id 1): its copiers hold a pipe end each as long as it runs.
        const p = await sb.exec({ argv: ["sh", "-c", "echo up; sleep 600"], env: {}, pty: true });
        const output: Buffer[] = [];
        p.onStdout((chunk) => output.push(Buffer.from(chunk)));
        for (let i = 0; i < 100 && !Buffer.concat(output).toString().includes("up"); i++) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        const copiers = agentFds(agent, /^pipe:/).filter((fd) => !pipesBefore.includes(fd));
        expect(copiers).toHaveLength(2);
        const before = serverFds();
        const started = { pid: 2, stdinFd: copiers[0], stdoutFd: copiers[1] };
        await forge(
          agent,
          Array.from({ length: 20 }, () => ({ id: "1", started })),
        );
        // Answered after every forged line has been read (the pipe keeps their order).
        await sb.fs.stat("/");
        expect(serverFds()).toBe(before);
        p.signal(9);
        expect(await p.exit).toEqual({ kind: "signaled", signal: 9 });
      } finally {
        await sb.destroy();
      }
    });

    it("watch events with paths no file can have (longer than PATH_MAX, more than two) are dropped", async () => {
      const sb = await runtime.createSandbox({ id: "forged-watch", env: {}, network: BLOCKED_NETWORK });
      const stop = new AbortController();
      try {
        const agent = agentPid(sb.id);
        // The sandbox's first call: its watch id is w1.
        const watch = await sb.fs.watch("/tmp", false, stop.signal);
        const huge = `/tmp/${"x".repeat(1024 * 1024)}`;
        await forge(agent, [
          {
            id: "w1",
            watch: {
              events: [
                { type: "WATCH_EVENT_TYPE_CREATE", paths: [huge] },
                { type: "WATCH_EVENT_TYPE_RENAME", paths: ["/tmp/a", "/tmp/b", "/tmp/c"] },
                { type: "WATCH_EVENT_TYPE_CREATE", paths: ["/tmp/forged-but-plausible"] },
              ],
            },
          },
        ]);
        const upload = await sb.fs.upload("/tmp/real");
        await upload.commit();
        const seen: RuntimeWatchEvent[] = [];
        for await (const batch of watch) {
          seen.push(...batch);
          if (seen.some((e) => e.paths.includes("/tmp/real"))) break;
        }
        expect(seen.map((e) => e.paths)).toEqual([["/tmp/forged-but-plausible"], ["/tmp/real"]]);
      } finally {
        stop.abort();
        await sb.destroy();
      }
    });
  });
}
