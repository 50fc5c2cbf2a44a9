/**
 * One local sandbox through its life: its disk, overlay root, cgroup and control dir made,
 * its launch, its agent's events turned into process and file answers, exec, and a destroy
 * that leaves nothing of it behind (see local-runtime.ts for the whole picture).
 */

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { chmod, chown, mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { RequestJson } from "@sbx/proto/agent";
import {
  processEnv,
  RuntimeDeadlineError,
  RuntimeFsError,
  type RuntimeProcess,
  type RuntimeProcessSpec,
  type RuntimeSandbox,
  type RuntimeSandboxSpec,
} from "@sbx/server-kit";
import { AgentConnection, agentBehind } from "./agent-connection.js";
import type { AgentEvent } from "./agent-events.js";
import {
  type AgentProcess,
  type AllowedFilesystems,
  fileIdentity,
  findAgent,
  reopenAgentFile,
  sandboxFilesystems,
} from "./agent-files.js";
import { AgentFilesystem } from "./agent-filesystem.js";
import { openProcessStdio } from "./agent-stdio.js";
import { type CgroupVersion, SandboxCgroup } from "./cgroups.js";
import { makeFifos, openFifoReader, openFifoWriter } from "./fifo.js";
import { claimLayer, type DefaultImage } from "./image.js";
import { launchArgs } from "./launch-command.js";
import { LocalProcess } from "./local-process.js";
import { mountOverlay } from "./overlay.js";
import { createSandboxDisk, type DiskSource, removeSandboxDisk } from "./sandbox-disk.js";
import { TmpfsRoom } from "./tmpfs-room.js";

const run = promisify(execFile);

export interface SandboxSetup {
  readonly dir: string;
  readonly image: DefaultImage;
  readonly seccomp: string;
  /** The agent binary (root's, installed by the runtime: see agent-binary.ts). */
  readonly agent: string;
  /** The sandbox's own host uid/gid (no other sandbox and no host account has them). */
  readonly uid: number;
  readonly gid: number;
  /** Hands the uid back; called once nothing of the sandbox runs or is left on disk. */
  readonly releaseUid: () => void;
  /** Capacity of the writable layer, and what it starts with. */
  readonly diskMiB: number;
  readonly diskSource: DiskSource;
  readonly cgroupVersion: CgroupVersion;
  /** Put before each sandbox id in its cgroup name (see cleanupCgroups). */
  readonly cgroupPrefix: string;
  readonly memoryMiB: number;
  readonly pidsLimit: number;
  readonly agentCallTimeoutMs: number;
  /** Called once it is destroyed (the runtime stops holding it). */
  readonly onDestroyed?: (sandbox: LocalSandbox) => void;
}

/** The filesystems a sandbox's files may be on (its overlay, tmpfs, and the host's /usr for reads). */
let filesystems: Promise<AllowedFilesystems> | undefined;
const allowedFilesystems = () => {
  filesystems ??= sandboxFilesystems(["/usr"]);
  return filesystems;
};

export class LocalSandbox implements RuntimeSandbox {
  id: string;
  readonly died: Promise<void>;
  #spec: RuntimeSandboxSpec;
  readonly #setup: SandboxSetup;
  readonly #cgroup: SandboxCgroup;
  readonly #processes = new Map<string, LocalProcess>();
  #markDied!: () => void;
  /** Its init is gone (or never started): no exec can reach an agent any more. */
  #hasDied = false;
  #child: ChildProcess | undefined;
  readonly #connection: AgentConnection;
  #ready: { resolve: () => void; reject: (e: Error) => void } | undefined;
  #counter = 0;
  #destroyed: Promise<void> | undefined;
  /** The agent of the current start, as the host sees it (found once it is ready). */
  #agent: AgentProcess | undefined;
  #stderr = "";
  /** Its memory limit now (adopt() may change it). */
  #memoryMiB: number;
  readonly #tmpfsRoom = new TmpfsRoom(() => this.#memoryMiB * 1024 * 1024);
  readonly fs = new AgentFilesystem({
    call: (request, options) => this.#connection.call(request, options),
    reopen: async (opened, access) =>
      reopenAgentFile(this.#runningAgent(), fileIdentity(opened), access, this.#setup, await allowedFilesystems()),
    claimRoom: (fd, bytes) => this.#tmpfsRoom.claim(fd, bytes),
    watch: (watch, listener) => this.#connection.watch(`w${++this.#counter}`, watch, listener),
  });

  #runningAgent(): AgentProcess {
    if (!this.#agent) throw new RuntimeFsError("other", "the sandbox is not running");
    return this.#agent;
  }

  constructor(spec: RuntimeSandboxSpec, setup: SandboxSetup) {
    this.id = spec.id;
    this.#spec = spec;
    this.#setup = setup;
    this.#memoryMiB = setup.memoryMiB;
    this.#cgroup = new SandboxCgroup(setup.cgroupVersion, `${setup.cgroupPrefix}-${spec.id}`);
    this.#connection = new AgentConnection({
      callTimeoutMs: setup.agentCallTimeoutMs,
      ended: () => this.#destroyed !== undefined,
      onEvent: (event) => this.#onEvent(event),
    });
    this.died = new Promise((resolve) => {
      this.#markDied = () => {
        this.#hasDied = true;
        resolve();
      };
    });
  }

  /** Takes on a sandbox's identity: its id (and cgroup name), environment and limits. */
  async adopt(spec: RuntimeSandboxSpec, limits: Parameters<SandboxCgroup["setLimits"]>[0]): Promise<void> {
    await this.#cgroup.setLimits(limits);
    this.#memoryMiB = limits.memoryLimitMiB;
    await this.#cgroup.rename(`${this.#setup.cgroupPrefix}-${spec.id}`);
    this.id = spec.id;
    this.#spec = spec;
  }

  get #paths() {
    const dir = this.#setup.dir;
    return {
      // On the sandbox's own disk (mounted at <dir>/disk, see sandbox-disk.ts).
      upper: join(dir, "disk", "upper"),
      work: join(dir, "disk", "work"),
      rootfs: join(dir, "rootfs"),
      ctl: join(dir, "ctl"),
    };
  }

  async start(): Promise<void> {
    const { uid, gid, dir, image, diskMiB, diskSource } = this.#setup;
    const paths = this.#paths;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await Promise.all([paths.rootfs, paths.ctl].map((p) => mkdir(p, { recursive: true })));
    // Every step runs to its end before start() settles, failed or not: destroy() (which
    // follows a failed start) must never race a disk still being mounted or FIFOs still made.
    await settleAll([
      createSandboxDisk(dir, diskMiB, diskSource)
        .then(() => claimLayer(paths.upper, uid, gid))
        .then(() => mountOverlay(image.lower, paths.upper, paths.work, paths.rootfs)),
      this.#cgroup.create({
        cpuLimit: this.#spec.cpuLimit,
        memoryLimitMiB: this.#setup.memoryMiB,
        pidsLimit: this.#setup.pidsLimit,
      }),
      this.#prepareControl(),
    ]);
    this.#connection.connect(openFifoReader(join(paths.ctl, "events")), openFifoWriter(join(paths.ctl, "ctl")));
    const ready = new Promise<void>((resolve, reject) => {
      this.#ready = { resolve, reject };
    });
    this.#spawn();
    const timer = setTimeout(
      () => this.#ready?.reject(new Error("the sandbox agent did not start within 15 s")),
      15_000,
    );
    try {
      await ready;
    } finally {
      clearTimeout(timer);
    }
    // Its host pid and start time, for reopening the files and pipes it names.
    this.#agent = await findAgent(this.#child?.pid ?? 0, this.#setup);
  }

  /**
   * The control dir is root's: the sandbox sees it (as /.sbx) and the agent opens the FIFOs
   * the server made in it, but nothing sandboxed can add, swap or remove anything there (a
   * symlink planted in it would otherwise be followed by the server, as root). Rebuilt on every
   * start, before any process of the sandbox runs. The empty file `agent` is where the agent
   * binary is bound (see launch-command.ts).
   */
  async #prepareControl(): Promise<void> {
    const ctl = this.#paths.ctl;
    await Promise.all(["ctl", "events"].map((name) => rm(join(ctl, name), { force: true })));
    await Promise.all([
      chown(ctl, 0, 0).then(() => chmod(ctl, 0o755)),
      writeFile(join(ctl, "agent"), "", { mode: 0o444 }),
    ]);
    await makeFifos([join(ctl, "ctl"), join(ctl, "events")], this.#setup.uid, this.#setup.gid);
  }

  #spawn(): void {
    const { uid, gid, seccomp, agent } = this.#setup;
    const paths = this.#paths;
    const args = launchArgs({ cgroupDirs: this.#cgroup.dirs, rootfs: paths.rootfs, ctl: paths.ctl, agent, uid, gid });
    const seccompFd = openSync(seccomp, "r");
    let child: ChildProcess;
    try {
      child = spawn("/bin/sh", args, { stdio: ["ignore", "ignore", "pipe", seccompFd], env: {} });
    } finally {
      closeQuietly(seccompFd); // the child has its copy (or there is no child)
    }
    this.#child = child;
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (text: string) => {
      if (this.#stderr.length < 4096) this.#stderr += text;
    });
    let ended = false;
    const end = (why: string) => {
      if (ended) return;
      ended = true;
      this.#ready?.reject(new Error(`the sandbox failed to start: ${why}`));
      for (const p of this.#processes.values()) p.sandboxEnded();
      this.#connection.sandboxEnded();
      this.#markDied();
    };
    child.on("exit", () => end(this.#stderr.trim() || "bwrap exited"));
    // A launch the kernel refuses (EAGAIN, ENOMEM, EACCES) is an 'error' event, not an exit:
    // unheard, Node would throw it and end the server with every sandbox.
    child.on("error", (error) => end(`could not launch it: ${error.message}`));
  }

  /** The agent's events other than answers to file calls and watches. */
  #onEvent(event: AgentEvent): void {
    const id = event.id ?? "";
    if (event.ready) {
      // The agent holds both control FIFOs open now, and no sandboxed code has run yet:
      // unlinked, they cannot be opened by anything in the sandbox (to forge answers or
      // swallow requests). Rebuilt by the next start.
      for (const name of ["ctl", "events"]) rm(join(this.#paths.ctl, name), { force: true }).catch(() => {});
      this.#ready?.resolve();
    } else if (event.started) {
      const process = this.#processes.get(id);
      // Given up on (its deadline passed: a kill was sent then), its pipes are not opened; nor
      // are they twice (only a compromised agent says Started again, and each would cost the
      // server descriptors).
      if (process && !process.ended && !process.hasStarted) {
        try {
          process.started(event.started.pid ?? 0, openProcessStdio(this.#runningAgent(), event.started));
        } catch (error) {
          this.#connection.send({ id, signal: { signal: 9 } });
          process.failed(error as Error);
        }
      }
      // Either way the agent closes its copies; told after the caller hears of the start (the
      // write wakes the agent, which may take this CPU for a while).
      setImmediate(() => this.#connection.send({ id, releaseStdio: {} }));
    } else if (event.failed) {
      this.#processes.get(id)?.failed(new Error(event.failed.error ?? "the agent could not start it"));
    } else if (event.exited) {
      const { signal, code } = event.exited;
      this.#processes
        .get(id)
        ?.exited(signal !== undefined ? { kind: "signaled", signal } : { kind: "exited", code: code ?? 0 });
    }
  }

  /** Bytes of requests the agent has not taken yet, held by the server (for tests). */
  get agentBacklog(): number {
    return this.#connection.backlog;
  }

  /** Calls waiting for the agent, and answers still to undo (for tests: nothing may pile up). */
  get agentCalls(): { readonly waiting: number; readonly abandoned: number } {
    return this.#connection.pending;
  }

  async exec(spec: RuntimeProcessSpec): Promise<RuntimeProcess> {
    if (this.#destroyed) throw new Error("the sandbox has been destroyed");
    if (this.#hasDied) throw new Error("the sandbox has ended");
    if (this.#connection.behind) throw agentBehind();
    const id = String(++this.#counter);
    const process = new LocalProcess();
    this.#processes.set(id, process);
    process.exit.finally(() => this.#processes.delete(id));
    this.#connection.send({
      id,
      exec: {
        argv: [...spec.argv],
        env: processEnv(spec.pty, this.#spec.env, spec.env),
        cwd: spec.workdir ?? this.#spec.workdir ?? "/",
        mergeStderr: spec.mergeStderr || spec.pty,
        ...(spec.pty ? { pty: { rows: spec.ptySize?.rows || 24, cols: spec.ptySize?.cols || 80 } } : {}),
      },
    });
    // Asked for by the client, as often as it likes: dropped while the agent is behind.
    const sendUnlessBehind = (request: RequestJson) => {
      if (!this.#connection.behind) this.#connection.send(request);
    };
    process.signalSender = (signal) => sendUnlessBehind({ id, signal: { signal } });
    process.resizer = (rows, cols) => sendUnlessBehind({ id, resize: { rows, cols } });
    // An agent alive but silent (stopped, starved) must not hold the call forever; and a
    // process it starts after the deadline is killed, never left running unobserved.
    const limitMs = this.#setup.agentCallTimeoutMs;
    const deadline = setTimeout(() => {
      this.#connection.send({ id, signal: { signal: 9 } });
      process.failed(
        new RuntimeDeadlineError(
          `the sandbox did not start ${spec.argv[0]} within ${limitMs / 1000} s (it may be overloaded or stopped)`,
        ),
      );
    }, limitMs);
    try {
      await process.whenStarted;
    } finally {
      clearTimeout(deadline);
    }
    return process;
  }

  destroy(): Promise<void> {
    this.#destroyed ??= (async () => {
      const emptied = await this.#cgroup.destroy();
      this.#child?.kill("SIGKILL");
      for (const p of this.#processes.values()) p.sandboxEnded();
      this.#connection.disconnect();
      await run("umount", ["-l", this.#paths.rootfs]).catch(() => {});
      await removeSandboxDisk(this.#setup.dir);
      // Only once no sandboxed process is left: none can race the removal, and none still runs
      // as the uid. Else both wait for cleanupLeftovers at the next start.
      if (emptied) {
        await rm(this.#setup.dir, { recursive: true, force: true }).catch(() => {});
        this.#setup.releaseUid();
      }
      this.#setup.onDestroyed?.(this);
    })();
    return this.#destroyed;
  }
}

const closeQuietly = (fd: number) => {
  try {
    closeSync(fd);
  } catch {}
};

/** Waits for every promise to settle, then fails with the first failure (if any). */
async function settleAll(steps: readonly Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(steps);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}
