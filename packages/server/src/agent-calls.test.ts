// File calls never hang on the sandbox's agent: special files are refused before they are
// opened, a fork bomb leaves file calls answering, an agent that does not answer ends a call
// with a deadline error (core's TimeoutError), and a call given up on leaves nothing behind.
// Real server, with a short agent deadline and a small pids limit.
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SandboxClient, SandboxFilesystemPermissionError, TimeoutError } from "@sbx/node";
import { BLOCKED_NETWORK, type RuntimeSandbox, type SandboxRuntime } from "@sbx/server-kit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { silentLogger } from "./logger.js";
import { createLocalRuntime } from "./runtime/local/index.js";
import { type RunningServer, startServer } from "./server.js";
import { errorOf, realServerAvailable } from "./test-support.js";

const available = await realServerAvailable();
const AGENT_DEADLINE_MS = 1_500;
const PIDS_LIMIT = 64;

/** The runtime's own sandboxes, by id, to reach what the wire does not show. */
interface LocalSandboxView extends RuntimeSandbox {
  readonly agentCalls: { readonly waiting: number; readonly abandoned: number };
  /** Bytes of requests the agent has not taken yet, held by the server. */
  readonly agentBacklog: number;
}

/** The sandbox's cgroup dir on the host (named <data dir tag>-<sandbox id>). */
function cgroupOf(id: string): string {
  const parent = existsSync("/sys/fs/cgroup/cgroup.controllers") ? "/sys/fs/cgroup/sbx" : "/sys/fs/cgroup/pids/sbx";
  const name = readdirSync(parent).find((entry) => entry.endsWith(`-${id}`));
  if (!name) throw new Error(`no cgroup for ${id}`);
  return join(parent, name);
}

/** The host pid of the sandbox's agent (/.sbx/agent, in its cgroup). */
function agentPid(id: string): number {
  for (const pid of readFileSync(join(cgroupOf(id), "cgroup.procs"), "utf8")
    .split("\n")
    .filter(Boolean)) {
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    if (argv[0] === "/.sbx/agent") return Number(pid);
  }
  throw new Error(`no agent in ${id}`);
}

/**
 * Stops a process and waits until every one of its threads is stopped: a stop signal takes
 * effect as each thread next runs, and on a loaded machine a running thread could still read a
 * request and answer it first.
 */
async function stopProcess(pid: number): Promise<void> {
  process.kill(pid, "SIGSTOP");
  const stopped = () =>
    readdirSync(`/proc/${pid}/task`).every((tid) => {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      return stat.slice(stat.lastIndexOf(")") + 2).startsWith("T");
    });
  for (let i = 0; i < 200 && !stopped(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
}

/** Runs `during` with the process stopped (see stopProcess), then lets it run again. */
async function whileStopped<T>(pid: number, during: () => Promise<T>): Promise<T> {
  await stopProcess(pid);
  try {
    return await during();
  } finally {
    process.kill(pid, "SIGCONT");
  }
}

/** What each open descriptor of a process points at (one closed meanwhile is left out). */
function descriptorTargets(pid: number): string[] {
  return readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
    try {
      return [readlinkSync(`/proc/${pid}/fd/${fd}`)];
    } catch {
      return []; // closed meanwhile
    }
  });
}

/** How many processes the sandbox's cgroup counts. */
const pidsCurrent = (cgroup: string) => Number(readFileSync(join(cgroup, "pids.current"), "utf8"));

/** The child of the sandbox's cgroup that bounds its workload's pids (see cgroups.ts). */
const workOf = (cgroup: string) => join(cgroup, "work");

/** Host ids of the threads in a cgroup itself (v2: a threaded one's; v1: its tasks). */
const threadsIn = (cgroup: string) =>
  readFileSync(join(cgroup, existsSync(join(cgroup, "cgroup.threads")) ? "cgroup.threads" : "tasks"), "utf8")
    .split("\n")
    .filter(Boolean)
    .map(Number);

/** Whether a host task's pids cgroup is a `work` one (v2: its one line; v1: the pids hierarchy's). */
const inWork = (path: string) =>
  (
    readFileSync(path, "utf8")
      .split("\n")
      .find((line) => line.startsWith("0::") || /^\d+:[^:]*\bpids\b/.test(line)) ?? ""
  ).endsWith("/work");

/**
 * Pids of the workload's processes: those whose main thread is in `work` (read per process: a v2
 * threaded cgroup's own list of processes cannot be read, and its root lists them all).
 */
const workloadPids = (cgroup: string) =>
  readFileSync(join(cgroup, "cgroup.procs"), "utf8")
    .split("\n")
    .filter(Boolean)
    .map(Number)
    .concat(
      existsSync(join(workOf(cgroup), "tasks"))
        ? readFileSync(join(workOf(cgroup), "cgroup.procs"), "utf8")
            .split("\n")
            .filter(Boolean)
            .map(Number)
        : [],
    )
    .filter((pid, i, all) => all.indexOf(pid) === i)
    .filter((pid) => {
      try {
        return inWork(`/proc/${pid}/cgroup`);
      } catch {
        return false; // gone meanwhile
      }
    });

/** Host ids of a process's threads. */
const threadIds = (pid: number) => readdirSync(`/proc/${pid}/task`).map(Number);

/** Polls `check` until it holds (bounded: fails the test after `tries`). */
async function eventually(check: () => boolean, what: string, tries = 200): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (check()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`never happened: ${what}`);
}

if (available) {
  describe("agent calls (real server)", () => {
    const dataDir = mkdtempSync(join(tmpdir(), "sbx-agent-calls-"));
    const sandboxes = new Map<string, LocalSandboxView>();
    let server: RunningServer;
    let client: SandboxClient;
    let local: ReturnType<typeof createLocalRuntime>;

    beforeAll(async () => {
      local = createLocalRuntime({
        dataDir,
        agentCallTimeoutMs: AGENT_DEADLINE_MS,
        pidsLimit: PIDS_LIMIT,
        warmPoolSize: 0,
      });
      const runtime: SandboxRuntime = {
        name: local.name,
        checkPrerequisites: () => local.checkPrerequisites(),
        createSandbox: async (spec) => {
          const sandbox = await local.createSandbox(spec);
          sandboxes.set(spec.id, sandbox as LocalSandboxView);
          return sandbox;
        },
        cleanupLeftovers: () => local.cleanupLeftovers(),
        close: () => local.close(),
      };
      server = await startServer({ dataDir, runtime, listen: "127.0.0.1:0", token: "t", logger: silentLogger });
      // No retries: a deadline error is reported once, not waited out again.
      client = new SandboxClient({ endpoint: server.url, token: server.token, maxRetries: 0 });
    });
    afterAll(async () => {
      await client?.close();
      await server?.close();
      rmSync(dataDir, { recursive: true, force: true });
    });

    type Sandbox = Awaited<ReturnType<typeof client.sandboxes.create>>;

    const run = async (sb: Sandbox, argv: string[]) => {
      const p = await sb.exec(argv, { stderr: "stdout" });
      const [out, code] = await Promise.all([p.stdout.readText(), p.wait()]);
      return { out, code };
    };

    /** The runtime's own view of `sb`. */
    const localOf = (sb: Sandbox) => {
      const sandbox = sandboxes.get(sb.id);
      if (!sandbox) throw new Error("no runtime sandbox");
      return sandbox;
    };

    /**
     * Starts a fork bomb in `sb` and waits until it fills the pids limit. Every process forks
     * until the limit refuses, then holds its pid: no call can get a new thread from then on (a
     * churning bomb would free one now and then).
     */
    const forkBomb = async (sb: Sandbox) => {
      const bomb = [
        "import os, time",
        "while True:",
        "    try:",
        "        os.fork()",
        "    except OSError:",
        "        time.sleep(600)",
      ].join("\n");
      await sb.exec(["python3", "-c", bomb]);
      const work = workOf(cgroupOf(sb.id));
      await eventually(() => pidsCurrent(work) >= PIDS_LIMIT, "the fork bomb filled the pids limit");
    };

    it("refuses to read a FIFO, a device or a socket at once (typed error), and later calls still work", async () => {
      await using sb = await client.sandboxes.create();
      const made = await run(sb, [
        "python3",
        "-c",
        "import os, socket; os.mkfifo('/tmp/fifo'); os.symlink('/tmp/fifo', '/tmp/link'); socket.socket(socket.AF_UNIX).bind('/tmp/sock'); print('made')",
      ]);
      expect(made.out).toBe("made\n");
      for (const path of ["/tmp/fifo", "/tmp/link", "/dev/zero", "/tmp/sock"]) {
        const error = await errorOf(sb.filesystem.readText(path));
        expect(error, path).toBeInstanceOf(SandboxFilesystemPermissionError);
        expect(String((error as Error).message)).toMatch(/not a regular file/);
      }
      const error = await errorOf(sb.filesystem.readText("/tmp/fifo"));
      expect(String((error as Error).message)).toContain("/tmp/fifo: is a FIFO");
      // Nothing is stuck: every worker is free for what comes next.
      await Promise.all(
        Array.from({ length: 12 }, (_, i) => sb.filesystem.writeText(`file ${i}`, `/tmp/after-${i}.txt`)),
      );
      expect(await sb.filesystem.readText("/tmp/after-11.txt")).toBe("file 11");
      // Each download's "release" is sent after it ends: wait for those to be answered too.
      const local = sandboxes.get(sb.id);
      await eventually(() => local?.agentCalls.waiting === 0, "every call was answered");
      expect(local?.agentCalls.abandoned).toBe(0);
    });

    it("file calls still answer under a fork bomb that holds every pid (the agent's threads are outside the workload's limit)", async () => {
      await using sb = await client.sandboxes.create({ cpu: 0.5 });
      await sb.filesystem.writeText("before the bomb", "/tmp/before.txt");
      await forkBomb(sb);
      const started = await errorOf(
        sb
          .exec(["true"])
          .then((p) => p.wait())
          .then((code) => {
            if (code !== 0) throw new Error(`exit ${code}`);
          }),
      );
      expect(String(started)).toMatch(/exit|Resource temporarily unavailable|cannot start/);
      expect(await sb.filesystem.readText("/tmp/before.txt")).toBe("before the bomb");
      expect((await sb.filesystem.stat("/tmp/before.txt")).size).toBe(15);
      await sb.filesystem.writeText("during the bomb", "/tmp/during.txt");
      expect((await sb.filesystem.listFiles("/tmp")).map((e) => e.name)).toContain("during.txt");
      await sb.filesystem.remove("/tmp/during.txt");
    });

    it("an agent that does not answer ends the call with a deadline error naming the operation", async () => {
      await using sb = await client.sandboxes.create();
      await sb.filesystem.writeText("x", "/tmp/x.txt");
      await whileStopped(agentPid(sb.id), async () => {
        const error = await errorOf(sb.filesystem.stat("/tmp/x.txt"));
        expect(error).toBeInstanceOf(TimeoutError);
        expect(String((error as Error).message)).toContain(
          "stat /tmp/x.txt: the sandbox did not answer stat within 1.5 s",
        );
        expect(sandboxes.get(sb.id)?.agentCalls.waiting).toBe(0);
      });
      // The agent answers again once it runs.
      expect(await sb.filesystem.readText("/tmp/x.txt")).toBe("x");
    });

    it("a call given up on leaves no entry, and a late answer is undone (the agent closes the file)", async () => {
      await using sb = await client.sandboxes.create();
      const name = `given-up-${Date.now()}.txt`;
      await sb.filesystem.writeText("data", `/tmp/${name}`);
      const local = localOf(sb);
      const agent = agentPid(sb.id);
      const holdsFile = () => descriptorTargets(agent).some((target) => target.endsWith(name));
      await whileStopped(agent, async () => {
        const controller = new AbortController();
        const reading = local.fs.read(`/tmp/${name}`, 0, controller.signal);
        expect(local.agentCalls.waiting).toBe(1);
        controller.abort(new Error("the client went away"));
        expect(String(await errorOf(reading))).toContain("the client went away");
        expect(local.agentCalls).toEqual({ waiting: 0, abandoned: 1 });
      });
      // The agent opens the file for the call it still got, then closes it when told to.
      await eventually(() => local.agentCalls.abandoned === 0, "the late answer was seen");
      await eventually(() => !holdsFile(), "the agent closed the file");
      expect(local.agentCalls.waiting).toBe(0);
    });

    it("a terminal command started with the sandbox's last pid runs: its copiers need no pid of the workload's", async () => {
      await using sb = await client.sandboxes.create();
      const work = workOf(cgroupOf(sb.id));
      const agent = agentPid(sb.id);
      const terminalsHeld = () =>
        descriptorTargets(agent).filter((target) => /^\/dev\/(ptmx|pts\/)/.test(target)).length;
      // One pid left: the command takes it; copying its terminal takes none.
      writeFileSync(join(work, "pids.max"), String(pidsCurrent(work) + 1));
      let result: { stdout: string };
      try {
        result = await sb.run("echo fine", { pty: true });
      } finally {
        writeFileSync(join(work, "pids.max"), String(PIDS_LIMIT));
      }
      expect(result.stdout).toBe("fine\r\n");
      // Of the agent, only the thread that forks is under the workload's limit.
      expect(threadsIn(work).filter((tid) => threadIds(agent).includes(tid))).toHaveLength(1);
      await eventually(() => terminalsHeld() === 0, "the agent let go of the terminal");
    });

    it("while a fork bomb holds every pid, file calls and exec attempts are answered and the agent lives on", async () => {
      await using sb = await client.sandboxes.create({ cpu: 0.5 });
      const work = workOf(cgroupOf(sb.id));
      const agent = agentPid(sb.id);
      await sb.filesystem.makeDirectory("/tmp/calls");
      await forkBomb(sb);
      // More calls at once than the agent has file workers, of every kind, with exec attempts
      // and a watch among them: each blocking call the agent makes needs a thread, and none can
      // be made now (a Go program that needs one and cannot make it aborts).
      const watch = sb.filesystem.watch("/tmp/calls", { recursive: true });
      await watch.ready;
      const rounds = Array.from({ length: 24 }, async (_, i) => {
        const path = `/tmp/calls/${i}.txt`;
        await sb.filesystem.writeText(`call ${i}`, path);
        const [text, info, list] = await Promise.all([
          sb.filesystem.readText(path),
          sb.filesystem.stat(path),
          sb.filesystem.listFiles("/tmp/calls"),
          sb.filesystem.makeDirectory(`/tmp/calls/d${i}/e`),
        ]);
        await sb.filesystem.remove(`/tmp/calls/d${i}`, { recursive: true });
        return { text, size: info.size, listed: list.some((e) => e.name === `${i}.txt`) };
      });
      const execs = Array.from({ length: 8 }, () => errorOf(sb.exec(["true"]).then((p) => p.wait())));
      const [answers, failures] = await Promise.all([Promise.all(rounds), Promise.all(execs)]);
      answers.forEach((answer, i) => {
        expect(answer).toEqual({ text: `call ${i}`, size: `call ${i}`.length, listed: true });
      });
      for (const failure of failures) expect(String(failure)).toContain("the sandbox's pids limit is reached");
      // The watch saw the calls' files appear (its reader is on the agent's poller: no thread).
      const created = new Set<string>();
      for await (const event of watch) {
        if (event.type === "create") for (const path of event.paths) created.add(path);
        if (created.has("/tmp/calls/23.txt")) break;
      }
      expect(created).toContain("/tmp/calls/0.txt");
      // The same agent, with one thread only under the workload's limit: the one that forks.
      expect(agentPid(sb.id)).toBe(agent);
      expect(threadsIn(work).filter((tid) => threadIds(agent).includes(tid))).toHaveLength(1);
      // Once the bomb is gone (killed from the host: all of the workload), processes start again.
      for (let i = 0; i < 20 && pidsCurrent(work) > 1; i++) {
        for (const pid of workloadPids(cgroupOf(sb.id))) process.kill(pid, "SIGKILL");
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect((await run(sb, ["echo", "after the bomb"])).out).toBe("after the bomb\n");
    });

    it("every process starts under the workload's pids limit, and of the agent only the thread that forks them", async () => {
      await using sb = await client.sandboxes.create();
      const cgroup = cgroupOf(sb.id);
      const work = workOf(cgroup);
      const agent = agentPid(sb.id);
      const spawner = threadsIn(work).filter((tid) => threadIds(agent).includes(tid));
      expect(spawner).toHaveLength(1);
      // A process, and one its child starts in a new session (a daemon), are both in `work`.
      const started = await sb.exec(["sh", "-c", "setsid sleep 600 & echo $$; sleep 600"]);
      const reader = started.stdout[Symbol.asyncIterator]();
      await reader.next();
      await eventually(() => workloadPids(cgroup).length >= 3, "both sleeps started");
      const bwrap = Number(/^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${agent}/status`, "utf8"))?.[1]);
      expect(workloadPids(cgroup)).not.toContain(agent);
      expect(workloadPids(cgroup)).not.toContain(bwrap);
      // Every thread of the agent but its spawner is outside `work`.
      const agentThreadsInWork = threadIds(agent).filter((tid) => inWork(`/proc/${agent}/task/${tid}/cgroup`));
      expect(agentThreadsInWork).toEqual(spawner);
      // The workload's limit is the sandbox's (and the spawner); its cgroup has room for the agent beyond it.
      expect(Number(readFileSync(join(work, "pids.max"), "utf8"))).toBe(PIDS_LIMIT + 1);
      expect(Number(readFileSync(join(cgroup, "pids.max"), "utf8"))).toBeGreaterThan(PIDS_LIMIT + 1);
      await started.kill();
    });

    it("terminals writing while a fork bomb holds every pid: the agent starts the threads it needs and lives on", async () => {
      await using sb = await client.sandboxes.create({ cpu: 0.5 });
      const agent = agentPid(sb.id);
      // Terminals the agent copies for, each writing without pause (a long write can take a
      // thread of the agent's: with one P, the runtime starts another for the rest).
      const terminals = await Promise.all(
        Array.from({ length: 12 }, () =>
          sb.exec(["sh", "-c", "while :; do echo aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; done"], {
            pty: true,
          }),
        ),
      );
      await forkBomb(sb);
      // Their output still flows, file calls answer, and the agent is the same process.
      for (const terminal of terminals) {
        const reader = terminal.stdout[Symbol.asyncIterator]();
        for (let i = 0; i < 3; i++) expect((await reader.next()).done).toBe(false);
        await reader.return?.();
      }
      await sb.filesystem.writeText("during the bomb", "/tmp/during.txt");
      expect(await sb.filesystem.readText("/tmp/during.txt")).toBe("during the bomb");
      expect(agentPid(sb.id)).toBe(agent);
      expect(readFileSync(`/proc/${agent}/status`, "utf8")).not.toMatch(/^State:\s+Z/m);
    });

    it("a watch given up on before it is in place is stopped, even after thousands of failed watches", async () => {
      await using sb = await client.sandboxes.create();
      const local = localOf(sb);
      const agent = agentPid(sb.id);
      const inotifyCount = () => descriptorTargets(agent).filter((target) => target === "anon_inode:inotify").length;
      // Each failed watch is followed by an unwatch for a watch the agent never set up: none of
      // them may be remembered (an agent that did filled a bounded set, then ignored the rest).
      const never = new AbortController().signal;
      for (let batch = 0; batch < 42; batch++) {
        const failing = Array.from({ length: 100 }, () => errorOf(local.fs.watch("/no/such/dir", false, never)));
        for (const error of await Promise.all(failing)) expect(String(error)).toMatch(/no such file|not_found/i);
      }
      // Watches whose callers give up (the deadline) while the agent is stopped: their unwatch
      // reaches the agent before it sets them up.
      const givenUp = await whileStopped(agent, () =>
        Promise.all(Array.from({ length: 4 }, () => errorOf(local.fs.watch("/tmp", true, never)))),
      );
      for (const error of givenUp) expect(String(error)).toContain("did not answer watch");
      // Every one of them is stopped: no inotify instance (nor its thread) is left.
      await eventually(() => inotifyCount() === 0, "the agent closed every watch's inotify instance");
    });

    it("the runtime lets go of every sandbox it destroyed", async () => {
      const held = () => (local as unknown as { readonly sandboxCount: number }).sandboxCount;
      const before = held();
      for (let i = 0; i < 3; i++) {
        const sb = await client.sandboxes.create();
        await sb.terminate();
      }
      // At most as many as before: a sandbox of an earlier test may still have been going then.
      await eventually(() => held() <= before, `the runtime holds at most ${before} sandboxes again`);
    });

    it("an exec the agent does not start in time fails with a deadline error; a late start is killed", async () => {
      await using sb = await client.sandboxes.create();
      const error = await whileStopped(agentPid(sb.id), () =>
        errorOf(sb.exec(["sh", "-c", "echo started > /tmp/late; sleep 600"])),
      );
      expect(error).toBeInstanceOf(TimeoutError);
      expect(String((error as Error).message)).toContain("the sandbox did not start sh within 1.5 s");
      // Resumed, the agent answers again, and nothing of the late command is left running.
      const ps = await sb.exec(["sh", "-c", "sleep 1; ps -eo args"]);
      expect(await ps.stdout.readText()).not.toContain("sleep 600");
    });

    it("an agent that stops reading its requests costs the server a bounded backlog: calls past it fail at once", async () => {
      // Sandboxed code can stop its agent's reading (a process stopped between fork and exec
      // holds the agent's fork), and an agent may be stopped or compromised: what the server
      // writes to it must not pile up in the server's memory.
      await using sb = await client.sandboxes.create();
      const local = localOf(sb);
      const agent = agentPid(sb.id);
      const longPath = `/tmp/${"x".repeat(256 * 1024)}`;
      process.kill(agent, "SIGSTOP");
      let calls: Promise<unknown>[];
      let execs: Promise<unknown>[];
      let backlog: number;
      try {
        calls = Array.from({ length: 40 }, () => errorOf(local.fs.stat(longPath)));
        execs = Array.from({ length: 8 }, () =>
          errorOf(local.exec({ argv: ["true", longPath], env: {}, pty: false }).then((p) => p.exit)),
        );
        backlog = local.agentBacklog;
        const refused = await Promise.race([
          errorOf(local.fs.list(longPath)),
          new Promise((resolve) => setTimeout(() => resolve("still waiting"), AGENT_DEADLINE_MS / 3)),
        ]);
        expect(String(refused)).toContain("has not taken the requests sent to it");
        await Promise.all([...calls, ...execs]);
      } finally {
        process.kill(agent, "SIGCONT");
      }
      // 40 stats and 8 execs of 256 KiB: more than 12 MiB, had they all been kept.
      expect(backlog).toBeLessThanOrEqual(5 * 1024 * 1024);
      for (const error of await Promise.all([...calls, ...execs])) {
        expect(String(error)).toMatch(/has not taken the requests sent to it|did not (answer|start)/);
      }
      // Resumed, it catches up and answers again.
      await eventually(() => local.agentBacklog === 0, "the agent took every request");
      expect((await run(sb, ["echo", "caught up"])).out).toBe("caught up\n");
    });

    it("an exec in a sandbox whose init died fails at once instead of waiting for an agent that is gone", async () => {
      // Straight from the runtime: the engine would destroy it as soon as it died.
      const id = `sb-died${Date.now().toString(36)}`;
      const sandbox = await local.createSandbox({ id, env: {}, network: BLOCKED_NETWORK });
      try {
        process.kill(agentPid(id), "SIGKILL");
        await sandbox.died;
        const outcome = await Promise.race([
          errorOf(sandbox.exec({ argv: ["true"], env: {}, pty: false })),
          new Promise((resolve) => setTimeout(() => resolve("still waiting after 5 s"), 5_000)),
        ]);
        expect(String(outcome)).toContain("the sandbox has ended");
      } finally {
        await sandbox.destroy();
      }
    });
  });
}
