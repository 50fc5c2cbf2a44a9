/**
 * One local sandbox through its life: its disk, overlay root, cgroup and control dir made,
 * its launch, its agent's events turned into process and file answers, exec, and a destroy
 * that leaves nothing of it behind (see local-runtime.ts for the whole picture).
 */

import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, openSync } from "node:fs";
import { chmod, chown, mkdir, rm, writeFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import type { RequestJson } from "@sbx/proto/agent";
import {
  type ImageRecord,
  processEnv,
  RuntimeDeadlineError,
  RuntimeFsError,
  type RuntimeNetworkPolicy,
  type RuntimeProcess,
  type RuntimeProcessSpec,
  type RuntimeSandbox,
  type RuntimeSandboxSpec,
} from "@sbx/server-kit";
import { lowerToSandboxPriority } from "../../scheduling-priority.js";
import { AgentConnection, agentBehind } from "./agent-connection.js";
import type { AgentEvent } from "./agent-events.js";
import {
  type AgentProcess,
  type AllowedFilesystems,
  fileIdentity,
  findAgent,
  reopenAgentFile,
  type SandboxIdentity,
  sandboxFilesystems,
  sandboxRoot,
} from "./agent-files.js";
import { AgentFilesystem } from "./agent-filesystem.js";
import { openProcessStdio } from "./agent-stdio.js";
import { type CgroupVersion, SandboxCgroup } from "./cgroups.js";
import { makeFifos, openFifoReader, openFifoWriter } from "./fifo.js";
import { LAUNCH_FDS, launchArgs, RESOLV_CONF_PATH } from "./launch-command.js";
import { LocalProcess } from "./local-process.js";
import type { HostNetwork, SandboxLink } from "./network/host-network.js";
import type { RelayTunnel, TunnelRelay } from "./network/tunnel-relay.js";
import { mountRoot } from "./root-mount.js";
import { createSandboxDisk, type DiskSource, removeSandboxDisk } from "./sandbox-disk.js";
import type { RootRecipe } from "./sandbox-root.js";
import { TmpfsRoom } from "./tmpfs-room.js";
import { ID_BLOCK } from "./uid-range.js";
import { completeUsernsHandshake } from "./userns-handshake.js";

const run = promisify(execFile);

export interface SandboxSetup {
  readonly dir: string;
  /** The mount every sandbox's disk and root are under (sandbox-mounts.ts). */
  readonly sandboxMounts: string;
  /** What its root is made of (sandbox-root.ts). */
  readonly root: RootRecipe;
  readonly seccomp: string;
  /** The agent binary (root's, installed by the runtime: see agent-binary.ts); also mounts the root. */
  readonly agent: string;
  /**
   * The first host id of the sandbox's own block of 65,536 (no other sandbox and no host
   * account has any of them): sandbox id u is host id base + u.
   */
  readonly base: number;
  /** The image store's canonical block: what image id 0 is on disk (layers and the sandbox's disk). */
  readonly layerIdBase: number;
  /** Hands the block back; called once nothing of the sandbox runs or is left on disk. */
  readonly releaseBlock: () => void;
  /** Capacity of the writable layer, and what it starts with. */
  readonly diskMiB: number;
  readonly diskSource: DiskSource;
  readonly cgroupVersion: CgroupVersion;
  /** Put before each sandbox id in its cgroup name (see cleanupCgroups). */
  readonly cgroupPrefix: string;
  readonly memoryMiB: number;
  readonly pidsLimit: number;
  readonly agentCallTimeoutMs: number;
  /**
   * The nice value sandboxes run at, when the server raised its own (scheduling-priority.ts):
   * the launch and the sandbox's first process are set to it before any sandboxed code runs.
   */
  readonly sandboxNice?: number | undefined;
  /** Hears of each request sent to its agent (the runtime's pools refill once those stop). */
  readonly onActivity?: () => void;
  /** Its network: a link made during its launch, blocked until its policy is applied. */
  readonly network: HostNetwork;
  /** Called once it is destroyed (the runtime stops holding it). */
  readonly onDestroyed?: (sandbox: LocalSandbox) => void;
  /**
   * Called when its destroy begins, with what settles when the destroy has ended (either way),
   * and what settles once nothing of the sandbox runs any more: with the destroy, or later when
   * processes outlived it (see #reap).
   */
  readonly onDestroying?: (done: Promise<void>, gone: Promise<void>) => void;
}

/** Time a start may take, from the launch to the agent's ready (and its user set). */
const START_TIMEOUT_MS = 15_000;

/** How often a destroyed sandbox whose processes outlived the destroy is tried again. */
const REAP_INTERVAL_MS = 2_000;

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
  /** The agent's spawner thread, as its Ready said (see SandboxCgroup.moveSpawner). */
  #spawnerTid = 0;
  /** The control FIFOs' unlinking, started at Ready (see #onEvent). */
  #controlUnlinked: Promise<unknown> | undefined;
  #counter = 0;
  #destroyed: Promise<void> | undefined;
  /** The agent of the current start, as the host sees it (found once it is ready). */
  #agent: AgentProcess | undefined;
  /** Whom the agent acts as (the image's User once configured, else the sandbox's root). */
  #identity: SandboxIdentity;
  /** HOME from the user's passwd entry, for an image whose Env sets none. */
  #home: string | undefined;
  /** The Configure call waiting for its answer. */
  #configuring: { id: string; resolve: (event: AgentEvent) => void } | undefined;
  /** Why the launch's user namespace handshake failed, if it did. */
  #handshakeError: Error | undefined;
  /** Its network link, being made (during the handshake) or made. */
  #link: Promise<SandboxLink> | undefined;
  /** Its tunnels in the tunnel relay, if it has had any (and those being opened). */
  #tunnels: { relay: TunnelRelay; opening: Set<Promise<unknown>> } | undefined;
  #stderr = "";
  /** Its memory limit now (adopt() may change it). */
  #memoryMiB: number;
  readonly #tmpfsRoom = new TmpfsRoom(() => this.#memoryMiB * 1024 * 1024);
  readonly fs = new AgentFilesystem({
    call: (request, options) => this.#connection.call(request, options),
    reopen: async (opened, access) =>
      reopenAgentFile(this.#runningAgent(), fileIdentity(opened), access, this.#identity, await allowedFilesystems()),
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
    this.#identity = sandboxRoot(setup.base);
    this.#memoryMiB = setup.memoryMiB;
    this.#cgroup = new SandboxCgroup(setup.cgroupVersion, `${setup.cgroupPrefix}-${spec.id}`);
    this.#connection = new AgentConnection({
      callTimeoutMs: setup.agentCallTimeoutMs,
      ended: () => this.#destroyed !== undefined,
      onEvent: (event) => this.#onEvent(event),
      onSend: setup.onActivity,
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
    await this.updateNetwork(spec.network);
  }

  /** Puts `policy` in force on its link, cutting connections it no longer allows. */
  async updateNetwork(policy: RuntimeNetworkPolicy): Promise<void> {
    if (!this.#link) throw new Error("the sandbox has no network");
    await (await this.#link).apply(policy);
  }

  /**
   * A TCP connection from the server to `port` inside the sandbox, over its link (the server
   * connects from the gateway address; the sandbox's answers come back as replies, which its
   * policy lets through even when it is blocked: ingress goes only through the server).
   * Rejects with the socket's error (ECONNREFUSED when nothing listens).
   */
  async dial(port: number, signal?: AbortSignal): Promise<Socket> {
    if (!this.#link) throw new Error("the sandbox has no network");
    const { address } = await this.#link;
    return await new Promise<Socket>((resolve, reject) => {
      const socket = connect({
        host: address,
        port,
        noDelay: true,
        allowHalfOpen: true,
        ...(signal ? { signal } : {}),
      });
      const fail = (error: Error) => {
        socket.destroy();
        reject(error);
      };
      socket.once("error", fail);
      socket.once("connect", () => {
        socket.off("error", fail);
        resolve(socket);
      });
    });
  }

  /**
   * A tunnel to `port` in the tunnel relay: a listener on `host` whose connections the relay
   * makes to the sandbox's address. Its tunnels are closed (none of their connections left)
   * before its address can go to another sandbox (destroy).
   */
  async openTunnel(relay: TunnelRelay, port: number, host: string): Promise<RelayTunnel> {
    if (!this.#link) throw new Error("the sandbox has no network");
    const { address } = await this.#link;
    if (this.#destroyed) throw new Error(`sandbox ${this.id} is not running`);
    return await this.#opening(relay, relay.open({ sandboxId: this.id, port, host, target: `${address}:${port}` }));
  }

  /**
   * Hands a tunnel-route connection to the relay (TunnelRelay.adopt), which dials its streams at
   * the sandbox's address. Its connections end when its tunnels are closed (destroy), which waits
   * for those being handed over.
   */
  async adoptTunnel(relay: TunnelRelay, socket: Socket): Promise<void> {
    if (!this.#link) throw new Error("the sandbox has no network");
    const { address } = await this.#link;
    if (this.#destroyed) throw new Error(`sandbox ${this.id} is not running`);
    await this.#opening(relay, relay.adopt({ sandboxId: this.id, address }, socket));
  }

  /** `work` (a tunnel or a connection going into the relay), waited for by #closeTunnels. */
  #opening<T>(relay: TunnelRelay, work: Promise<T>): Promise<T> {
    this.#tunnels ??= { relay, opening: new Set() };
    const { opening } = this.#tunnels;
    opening.add(work);
    const forget = () => opening.delete(work);
    work.then(forget, forget);
    return work;
  }

  /** Closes its tunnels in the relay, once those being opened are open. */
  async #closeTunnels(): Promise<void> {
    const tunnels = this.#tunnels;
    if (!tunnels) return;
    await Promise.allSettled([...tunnels.opening]);
    await tunnels.relay.close(this.id);
  }

  /** One try of a TCP readiness probe: something accepted a connection on `port` (closed at once). */
  async probeTcp(port: number, signal: AbortSignal): Promise<boolean> {
    try {
      const socket = await this.dial(port, signal);
      socket.destroy();
      return true;
    } catch {
      return false;
    }
  }

  get #paths() {
    const dir = this.#setup.dir;
    return {
      rootfs: join(dir, "rootfs"),
      ctl: join(dir, "ctl"),
    };
  }

  async start(): Promise<void> {
    const { base, dir, root, diskMiB, diskSource, agent, layerIdBase } = this.#setup;
    const paths = this.#paths;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await Promise.all([paths.rootfs, paths.ctl].map((p) => mkdir(p, { recursive: true })));
    // Every step runs to its end before start() settles, failed or not: destroy() (which
    // follows a failed start) must never race a disk still being mounted or FIFOs still made.
    await settleAll([
      createSandboxDisk(dir, diskMiB, diskSource).then((disk) =>
        mountRoot({ helper: agent, target: paths.rootfs, disk, layerIdBase, base, lowers: root.lowers }),
      ),
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
    const child = this.#spawn();
    // bwrap waits for its maps: written by us, as root, for its child alone.
    // Its network link is made before bwrap goes on: nothing sandboxed runs without it.
    const attach = async (pid: number, netns: number) => {
      // Still waiting for its maps, so nothing sandboxed runs yet: everything in the sandbox
      // descends from it and inherits this priority, not the server's raised one.
      const nice = this.#setup.sandboxNice;
      if (nice !== undefined) lowerToSandboxPriority(pid, nice);
      // With its policy in force from the start: the update after the start is then a no-op.
      this.#link = this.#setup.network.attach(netns, this.#spec.network);
      await this.#link;
    };
    completeUsernsHandshake(child, base, START_TIMEOUT_MS, attach).catch((error: Error) => {
      this.#handshakeError = error;
    });
    const timer = setTimeout(
      () => this.#ready?.reject(new Error(`the sandbox did not start within ${START_TIMEOUT_MS / 1000} s`)),
      START_TIMEOUT_MS,
    );
    try {
      await ready;
      // Its host pid and start time, for reopening the files and pipes it names.
      this.#agent = await findAgent(child.pid ?? 0, base);
      // Before any process starts: they all start in the cgroup of the thread that forks them,
      // and nothing sandboxed may find the control FIFOs.
      await this.#cgroup.moveSpawner(this.#agent.pid, this.#spawnerTid);
      await this.#controlUnlinked;
      // An image's sandbox runs as the image's User (looked up inside), in its WorkingDir.
      const image = this.#spec.image;
      if (image) await this.#configure(image);
      await this.updateNetwork(this.#spec.network);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Tells the agent whom to run processes as (the image's User; root when it names none) and
   * to make the image's WorkingDir; keeps the answer, which comes before any sandboxed code
   * runs, for the checks on the files the agent names and for HOME.
   */
  async #configure(image: ImageRecord): Promise<void> {
    const id = `u${randomBytes(12).toString("hex")}`;
    const answered = new Promise<AgentEvent>((resolve, reject) => {
      this.#configuring = { id, resolve };
      // Still part of the start: the sandbox ending, or the start's deadline, fails it.
      this.#ready = { resolve: () => {}, reject };
    });
    this.#connection.send({
      id,
      configure: { user: this.#spec.user ?? "", workdir: image.config.workingDir ?? "" },
    });
    const answer = await answered;
    this.#configuring = undefined;
    const identity = answer.identity;
    if (!identity) {
      throw new Error(`the sandbox cannot run as ${JSON.stringify(this.#spec.user ?? "root")}: ${answer.error?.error}`);
    }
    const ids = [identity.uid ?? 0, identity.gid ?? 0, ...(identity.groups ?? [])];
    if (ids.some((n) => !Number.isSafeInteger(n) || n < 0 || n >= ID_BLOCK)) {
      throw new Error("the sandbox agent gave a malformed identity");
    }
    this.#identity = {
      base: this.#setup.base,
      uid: identity.uid ?? 0,
      gid: identity.gid ?? 0,
      groups: identity.groups ?? [],
    };
    if (!image.config.env.some((entry) => entry.startsWith("HOME="))) this.#home = identity.home || "/";
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
    const resolvConf = join(ctl, RESOLV_CONF_PATH.slice("/.sbx/".length));
    await rm(resolvConf, { force: true });
    await Promise.all([
      chown(ctl, 0, 0).then(() => chmod(ctl, 0o755)),
      writeFile(join(ctl, "agent"), "", { mode: 0o444 }),
      writeFile(resolvConf, `nameserver ${this.#setup.network.plan.gateway}\n`, { mode: 0o444 }),
    ]);
    await makeFifos([join(ctl, "ctl"), join(ctl, "events")], this.#setup.base, this.#setup.base);
  }

  #spawn(): ChildProcess {
    const { base, seccomp, agent, root } = this.#setup;
    const paths = this.#paths;
    const args = launchArgs({
      cgroupDirs: this.#cgroup.dirs,
      agentSharesPids: !this.#cgroup.split,
      rootfs: paths.rootfs,
      ctl: paths.ctl,
      agent,
      base,
      hostUsr: root.hostUsr,
      resolvConf: root.resolvConf,
      sandboxMounts: this.#setup.sandboxMounts,
    });
    const seccompFd = openSync(seccomp, "r");
    const stdio: ("ignore" | "pipe" | number)[] = ["ignore", "ignore", "pipe", "ignore", "ignore", "ignore", "ignore"];
    stdio[LAUNCH_FDS.seccomp] = seccompFd;
    stdio[LAUNCH_FDS.info] = "pipe";
    stdio[LAUNCH_FDS.block] = "pipe";
    let child: ChildProcess;
    try {
      child = spawn("/bin/sh", args, { stdio, env: {} });
      // The launcher (sh, then bwrap: one pid) leaves the server's raised priority at once;
      // the sandbox's first process is set in the handshake, while it waits for its maps.
      if (this.#setup.sandboxNice !== undefined && child.pid)
        lowerToSandboxPriority(child.pid, this.#setup.sandboxNice);
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
    child.on("exit", () => end(this.#stderr.trim() || this.#handshakeError?.message || "bwrap exited"));
    // A launch the kernel refuses (EAGAIN, ENOMEM, EACCES) is an 'error' event, not an exit:
    // unheard, Node would throw it and end the server with every sandbox.
    child.on("error", (error) => end(`could not launch it: ${error.message}`));
    return child;
  }

  /** The agent's events other than answers to file calls and watches. */
  #onEvent(event: AgentEvent): void {
    const id = event.id ?? "";
    if (this.#configuring && id === this.#configuring.id && (event.identity || event.error)) {
      this.#configuring.resolve(event);
    } else if (event.ready) {
      // The agent holds both control FIFOs open now, and no sandboxed code has run yet:
      // unlinked, they cannot be opened by anything in the sandbox (to forge answers or
      // swallow requests). Rebuilt by the next start.
      this.#controlUnlinked = Promise.all(
        ["ctl", "events"].map((name) => rm(join(this.#paths.ctl, name), { force: true })),
      );
      this.#spawnerTid = event.ready.spawnerTid ?? 0;
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
        env: processEnv(
          spec.pty,
          this.#home === undefined ? this.#spec.env : { HOME: this.#home, ...this.#spec.env },
          spec.env,
          this.#spec.image,
        ),
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
    if (this.#destroyed) return this.#destroyed;
    let markGone!: () => void;
    const gone = new Promise<void>((resolve) => {
      markGone = resolve;
    });
    this.#destroyed = (async () => {
      let emptied = false;
      try {
        emptied = await this.#cgroup.destroy();
        this.#child?.kill("SIGKILL");
        for (const p of this.#processes.values()) p.sandboxEnded();
        this.#connection.disconnect();
        // No tunnel's connection may outlive its address (it may go to another sandbox next).
        await this.#closeTunnels().catch(() => {});
        await this.#link?.then((link) => link.detach()).catch(() => {});
        await run("umount", ["-l", this.#paths.rootfs]).catch(() => {});
        await removeSandboxDisk(this.#setup.dir);
        // Only once no sandboxed process is left: none can race the removal, and none still runs
        // as an id of the block. Else both wait until the cgroup is empty (#reap).
        if (emptied) {
          await rm(this.#setup.dir, { recursive: true, force: true }).catch(() => {});
          this.#setup.releaseBlock();
        }
        this.#setup.onDestroyed?.(this);
      } finally {
        if (emptied) markGone();
        else void this.#reap(markGone);
      }
    })();
    this.#setup.onDestroying?.(this.#destroyed, gone);
    return this.#destroyed;
  }

  /**
   * Processes outlived the destroy (a SIGKILL not yet acted on: a process in D state, a huge
   * address space torn down): kills what is in the cgroup again now and then until it is empty,
   * then frees what the destroy kept (its dir, its block) and says it is gone. Meanwhile they
   * may still run as ids of its block, on its image's layers.
   */
  async #reap(gone: () => void): Promise<void> {
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, REAP_INTERVAL_MS).unref());
      if (await this.#cgroup.destroy()) break;
    }
    await rm(this.#setup.dir, { recursive: true, force: true }).catch(() => {});
    this.#setup.releaseBlock();
    gone();
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
