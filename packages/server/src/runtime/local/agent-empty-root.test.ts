// The agent depends on nothing in the sandbox's root: as pid 1 of a root that holds only
// itself and its two FIFOs (no libc, no shell, no /bin), it starts, runs a program (itself),
// says why one cannot run, and answers file calls. Real bubblewrap, the runtime's own
// connection and pipe code.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { EventJson } from "@sbx/proto/agent";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { realServerAvailable } from "../../test-support.js";
import { packagedAgent } from "./agent-binary.js";
import { AgentConnection } from "./agent-connection.js";
import { type AgentProcess, findAgent } from "./agent-files.js";
import { openProcessStdio } from "./agent-stdio.js";
import { makeFifos, openFifoReader, openFifoWriter } from "./fifo.js";

const available = await realServerAvailable();

const readAll = (socket: Socket) =>
  new Promise<string>((resolve) => {
    let text = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      text += chunk;
    });
    socket.on("close", () => resolve(text));
  });

if (available) {
  describe("the agent in an empty root", () => {
    const dir = mkdtempSync(join(tmpdir(), "sbx-empty-root-"));
    const events: EventJson[] = [];
    const waiters: (() => void)[] = [];
    let bwrap: ChildProcess;
    let agent: AgentProcess;
    let connection: AgentConnection;

    const next = async (id: string, what: (e: EventJson) => boolean): Promise<EventJson> => {
      for (;;) {
        const found = events.find((e) => (e.id ?? "") === id && what(e));
        if (found) return found;
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    };

    beforeAll(async () => {
      const binary = packagedAgent();
      if (!binary) throw new Error("no agent for this machine");
      await makeFifos([join(dir, "ctl"), join(dir, "events")], 0, 0);
      connection = new AgentConnection({
        callTimeoutMs: 10_000,
        ended: () => false,
        onEvent: (event) => {
          events.push(event);
          for (const wake of waiters.splice(0)) wake();
        },
      });
      connection.connect(openFifoReader(join(dir, "events")), openFifoWriter(join(dir, "ctl")));
      // The root is an empty tmpfs: nothing but the agent and the FIFOs is bound in.
      bwrap = spawn(
        "bwrap",
        [
          "--unshare-all",
          "--die-with-parent",
          "--tmpfs",
          "/",
          "--ro-bind",
          binary,
          "/.sbx/agent",
          "--bind",
          join(dir, "ctl"),
          "/.sbx/ctl",
          "--bind",
          join(dir, "events"),
          "/.sbx/events",
          "--proc",
          "/proc",
          "--dev",
          "/dev",
          "--as-pid-1",
          "/.sbx/agent",
        ],
        { stdio: ["ignore", "ignore", "inherit"] },
      );
      await next("", (e) => e.ready !== undefined);
      agent = await findAgent(bwrap.pid ?? 0, { uid: 0, gid: 0 });
    });

    afterAll(() => {
      connection?.disconnect();
      bwrap?.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    });

    const exec = async (id: string, argv: string[]) => {
      connection.send({ id, exec: { argv, env: {}, cwd: "/" } });
      const started = await next(id, (e) => e.started !== undefined || e.failed !== undefined);
      if (!started.started) throw new Error(started.failed?.error);
      const stdio = openProcessStdio(agent, started.started);
      connection.send({ id, releaseStdio: {} });
      stdio.stdin.end();
      const [stdout, stderr, exited] = await Promise.all([
        readAll(stdio.stdout),
        stdio.stderr ? readAll(stdio.stderr) : "",
        next(id, (e) => e.exited !== undefined),
      ]);
      return { stdout, stderr, exited: exited.exited };
    };

    it("runs a program and reports its exit", async () => {
      const { stdout, exited } = await exec("1", ["/.sbx/agent", "--version"]);
      expect(stdout).toMatch(/^sbx-agent \S+\n$/);
      expect(exited).toEqual({ code: 0 });
    });

    it("says why a program cannot run, as a shell would", async () => {
      expect(await exec("2", ["sh", "-c", "true"])).toEqual({
        stdout: "",
        stderr: "sbx: cannot run sh: No such file or directory\n",
        exited: { code: 127 },
      });
    });

    it("answers file calls", async () => {
      const listed = await connection.call({ list: { path: "/.sbx" } });
      expect(listed.list?.entries?.map((e) => e.name)).toEqual(["agent", "ctl", "events"]);
      const agentFile = await connection.call({ stat: { path: "/.sbx/agent" } });
      expect(agentFile.info?.type).toBe("FILE_TYPE_FILE");
      await connection.call({ mkdir: { path: "/made/here", parents: true } });
      const made = await connection.call({ stat: { path: "/made/here" } });
      expect(made.info?.type).toBe("FILE_TYPE_DIRECTORY");
    });
  });
}
