/**
 * The `local` runtime: each sandbox is a bubblewrap container on this machine.
 *
 *   root (the server) ── creates the overlay root, the cgroup and the control FIFOs, then
 *     sh (joins the cgroup) → setpriv (drops to the sandbox uid, no caps) → bwrap
 *       (new user/pid/mount/ipc/uts/net/cgroup namespaces, seccomp, no_new_privs)
 *         → agent.py as pid 1, which starts every process of the sandbox.
 *
 * Everything in a sandbox descends from bwrap, so it shares the namespaces, root, cgroup
 * and filter; destroying the cgroup kills all of it, daemons included.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, chown, mkdir, readdir, rm, writeFile } from "node:fs/promises";
import type { Socket } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  type RuntimeExit,
  RuntimeFsError,
  type RuntimeProcess,
  type RuntimeProcessSpec,
  type RuntimeSandbox,
  type RuntimeSandboxSpec,
  type SandboxRuntime,
} from "../runtime.js";
import { type AgentEvent, EventLines, parseAgentEvent } from "./agent-events.js";
import {
  type AgentProcess,
  type AllowedFilesystems,
  fileIdentity,
  findAgent,
  reopenAgentFile,
  sandboxFilesystems,
} from "./agent-files.js";
import { AgentFilesystem, type WatchListener } from "./agent-filesystem.js";
import { type CgroupVersion, cgroupProblems, cleanupCgroups, detectCgroupVersion, SandboxCgroup } from "./cgroups.js";
import { FifoPool, openFifoReader, openFifoWriter } from "./fifo.js";
import { ensureDefaultImage } from "./image.js";
import { paceReads } from "./read-pacing.js";
import { seccompProgram, seccompSupported } from "./seccomp.js";

const run = promisify(execFile);
const AGENT = join(dirname(fileURLToPath(import.meta.url)), "agent.py");
const BASE_ENV = {
  // /opt/sbx/bin last: the image's fallbacks (e.g. `python` → python3) never shadow the system's.
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/sbx/bin",
  HOME: "/root",
  LANG: "C.UTF-8",
};

export interface LocalRuntimeOptions {
  /** Where images, per-sandbox layers and control files live. */
  readonly dataDir: string;
  /** Host uid/gid every sandboxed process runs as (unprivileged). Default 61000. */
  readonly uid?: number;
  readonly gid?: number;
  /** Memory limit when a sandbox sets none. Default 1024 MiB. */
  readonly defaultMemoryMiB?: number;
  /** Process/thread limit per sandbox. Default 512. */
  readonly pidsLimit?: number;
  /** Sandboxes kept started ahead of demand (0 disables). Default 2. */
  readonly warmPoolSize?: number;
}

export function createLocalRuntime(options: LocalRuntimeOptions): SandboxRuntime {
  return new LocalRuntime(options);
}

class LocalRuntime implements SandboxRuntime {
  readonly name = "local";
  readonly #dir: string;
  readonly #instance: string;
  readonly #uid: number;
  readonly #gid: number;
  readonly #options: LocalRuntimeOptions;
  readonly #sandboxes = new Map<string, LocalSandbox>();
  #image: Promise<string> | undefined;
  #prepared: Promise<void> | undefined;
  readonly #warm: LocalSandbox[] = [];
  #warming = 0;
  /** Warm starts in flight; close() waits for them (they destroy themselves once closed). */
  readonly #warmStarts = new Set<Promise<unknown>>();
  readonly #warmPoolSize: number;
  #closed = false;
  #seccompFile: Promise<string> | undefined;

  constructor(options: LocalRuntimeOptions) {
    this.#options = options;
    this.#dir = join(options.dataDir, "runtime");
    // Cgroup names carry a tag of the data dir, so two servers on one machine never touch
    // each other's sandboxes (cleanup after a crash removes only this data dir's cgroups).
    this.#instance = createHash("sha256").update(resolve(this.#dir)).digest("hex").slice(0, 10);
    this.#uid = options.uid ?? 61_000;
    this.#gid = options.gid ?? 61_000;
    this.#warmPoolSize = options.warmPoolSize ?? 2;
  }

  async checkPrerequisites(): Promise<string[]> {
    const problems: string[] = [];
    if (process.platform !== "linux") return ["the local runtime needs Linux"];
    if (!seccompSupported()) problems.push(`the seccomp filter supports x86_64 only, this machine is ${process.arch}`);
    if (process.getuid?.() !== 0) problems.push("the server must run as root to create cgroups and overlay mounts");
    for (const [tool, pkg] of [
      ["bwrap", "bubblewrap"],
      ["setpriv", "util-linux"],
      ["mkfifo", "coreutils"],
      ["mount", "mount"],
    ] as const) {
      if (!(await which(tool))) problems.push(`${tool} is missing: install it with 'apt-get install ${pkg}'`);
    }
    if (!existsSync("/usr/bin/python3")) {
      problems.push(
        "/usr/bin/python3 is missing (it runs the sandbox agent): install it with 'apt-get install python3'",
      );
    }
    problems.push(...(await cgroupProblems()));
    if (problems.length > 0) return problems;
    try {
      await run("setpriv", [
        `--reuid=${this.#uid}`,
        `--regid=${this.#gid}`,
        "--clear-groups",
        "bwrap",
        "--unshare-all",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--symlink",
        "usr/lib",
        "/lib",
        "/usr/bin/true",
      ]);
    } catch (error) {
      problems.push(
        `bubblewrap cannot create namespaces as an unprivileged user (${firstLine(error)}): enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0)`,
      );
    }
    try {
      await this.#probeOverlay();
    } catch (error) {
      problems.push(
        `cannot mount overlayfs under ${this.#dir} (${firstLine(error)}): load the overlay module (modprobe overlay)`,
      );
    }
    return problems;
  }

  async #probeOverlay(): Promise<void> {
    const probe = join(this.#dir, `overlay-probe-${process.pid}`);
    await Promise.all(["lower", "upper", "work", "merged"].map((d) => mkdir(join(probe, d), { recursive: true })));
    try {
      await mountOverlay(join(probe, "lower"), join(probe, "upper"), join(probe, "work"), join(probe, "merged"));
      await run("umount", [join(probe, "merged")]);
    } finally {
      await rm(probe, { recursive: true, force: true });
    }
  }

  async createSandbox(spec: RuntimeSandboxSpec): Promise<RuntimeSandbox> {
    if (spec.image) throw new Error(`unknown image ${JSON.stringify(spec.image)}`);
    if (this.#closed) throw new Error("the runtime is closed");
    const limits = this.#limitsOf(spec);
    // A pre-started sandbox takes on the new one's id, environment and limits.
    const warm = this.#warm.shift();
    if (warm) {
      this.#refillWarmPool();
      try {
        await warm.adopt(spec, limits);
        this.#sandboxes.set(spec.id, warm);
        return warm;
      } catch {
        await warm.destroy();
      }
    }
    const sandbox = await this.#start(spec);
    this.#refillWarmPool();
    return sandbox;
  }

  #limitsOf(spec: RuntimeSandboxSpec) {
    return {
      cpuLimit: spec.cpuLimit,
      memoryLimitMiB: spec.memoryLimitMiB ?? this.#options.defaultMemoryMiB ?? 1024,
      pidsLimit: spec.pidsLimit ?? this.#options.pidsLimit ?? 512,
    };
  }

  async #start(spec: RuntimeSandboxSpec): Promise<LocalSandbox> {
    this.#prepared ??= this.#prepare();
    await this.#prepared;
    const version = detectCgroupVersion();
    if (!version) throw new Error("no usable cgroup hierarchy");
    this.#image ??= ensureDefaultImage(join(this.#dir, "images"), this.#uid, this.#gid);
    this.#seccompFile ??= this.#writeSeccomp();
    const [image, seccomp] = await Promise.all([this.#image, this.#seccompFile]);
    const limits = this.#limitsOf(spec);
    const sandbox = new LocalSandbox(spec, {
      dir: join(this.#dir, "sandboxes", spec.id),
      image,
      seccomp,
      uid: this.#uid,
      gid: this.#gid,
      cgroupVersion: version,
      cgroupPrefix: this.#instance,
      memoryMiB: limits.memoryLimitMiB,
      pidsLimit: limits.pidsLimit,
    });
    this.#sandboxes.set(spec.id, sandbox);
    try {
      await sandbox.start();
    } catch (error) {
      await sandbox.destroy();
      this.#sandboxes.delete(spec.id);
      throw error;
    }
    return sandbox;
  }

  /**
   * Keeps `warmPoolSize` sandboxes started ahead of demand, so a create costs a cgroup
   * rename and a few limit writes instead of mount + bwrap + agent start.
   */
  #refillWarmPool(): void {
    while (!this.#closed && this.#warm.length + this.#warming < this.#warmPoolSize) {
      this.#warming++;
      const id = `warm-${Math.random().toString(36).slice(2, 12)}`;
      const starting = this.#start({ id, env: {}, blockNetwork: true })
        .then((sandbox) => {
          this.#sandboxes.delete(id);
          if (this.#closed) return sandbox.destroy();
          this.#warm.push(sandbox);
          sandbox.died.then(() => {
            const at = this.#warm.indexOf(sandbox);
            if (at !== -1) this.#warm.splice(at, 1);
          });
        })
        .catch(() => {})
        .finally(() => {
          this.#warming--;
          this.#warmStarts.delete(starting);
        });
      this.#warmStarts.add(starting);
    }
  }

  /** The runtime dir must be traversable by the sandbox uid (bwrap resolves paths as that user). */
  async #prepare(): Promise<void> {
    await mkdir(join(this.#dir, "sandboxes"), { recursive: true, mode: 0o711 });
    await chmod(this.#dir, 0o711);
    await chmod(join(this.#dir, "sandboxes"), 0o711);
  }

  async #writeSeccomp(): Promise<string> {
    const file = join(this.#dir, "seccomp.bpf");
    await mkdir(this.#dir, { recursive: true });
    await writeFile(file, seccompProgram(), { mode: 0o644 });
    return file;
  }

  async cleanupLeftovers(): Promise<void> {
    const root = join(this.#dir, "sandboxes");
    for (const entry of await readdir(root).catch(() => [] as string[])) {
      await run("umount", ["-l", join(root, entry, "rootfs")]).catch(() => {});
      await rm(join(root, entry), { recursive: true, force: true }).catch(() => {});
    }
    const version = detectCgroupVersion();
    if (version) await cleanupCgroups(version, this.#instance);
    this.#refillWarmPool();
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#warmStarts]);
    const all = [...this.#sandboxes.values(), ...this.#warm.splice(0)];
    await Promise.all(all.map((s) => s.destroy()));
    this.#sandboxes.clear();
  }
}

interface SandboxSetup {
  readonly dir: string;
  readonly image: string;
  readonly seccomp: string;
  readonly uid: number;
  readonly gid: number;
  readonly cgroupVersion: CgroupVersion;
  /** Put before each sandbox id in its cgroup name (see cleanupCgroups). */
  readonly cgroupPrefix: string;
  readonly memoryMiB: number;
  readonly pidsLimit: number;
}

/** The filesystems a sandbox's files may be on (its overlay, tmpfs, and the host's /usr for reads). */
let filesystems: Promise<AllowedFilesystems> | undefined;
const allowedFilesystems = () => {
  filesystems ??= sandboxFilesystems(["/usr"]);
  return filesystems;
};

class LocalSandbox implements RuntimeSandbox {
  id: string;
  readonly died: Promise<void>;
  #spec: RuntimeSandboxSpec;
  readonly #setup: SandboxSetup;
  readonly #cgroup: SandboxCgroup;
  readonly #processes = new Map<string, LocalProcess>();
  #markDied!: () => void;
  #child: ChildProcess | undefined;
  #events: Socket | undefined;
  #control: Socket | undefined;
  #ready: { resolve: () => void; reject: (e: Error) => void } | undefined;
  #counter = 0;
  readonly #fsCalls = new Map<string, { resolve: (result: unknown) => void; reject: (error: Error) => void }>();
  readonly #watchers = new Map<string, WatchListener>();
  #destroyed: Promise<void> | undefined;
  #agent: { child: ChildProcess; process: Promise<AgentProcess> } | undefined;
  #stderr = "";
  readonly #fifos: FifoPool;
  readonly fs = new AgentFilesystem({
    call: (op, fields) => this.#agentCall(op, fields),
    reopen: async (answer, access) =>
      reopenAgentFile(
        await this.#agentProcess(),
        fileIdentity(answer),
        access,
        this.#setup,
        await allowedFilesystems(),
      ),
    watch: (fields, listener) => {
      const id = `w${++this.#counter}`;
      this.#watchers.set(id, listener);
      return {
        answered: this.#agentCall("watch", fields, id),
        stop: () => {
          if (this.#watchers.delete(id)) this.#send({ op: "unwatch", id });
        },
      };
    },
  });

  /** The agent of the current start (found from its bubblewrap, once per start). */
  async #agentProcess(): Promise<AgentProcess> {
    const child = this.#child;
    if (!child?.pid) throw new RuntimeFsError("other", "the sandbox is not running");
    if (this.#agent?.child !== child) {
      const process = findAgent(child.pid, this.#setup);
      this.#agent = { child, process };
      process.catch(() => {
        if (this.#agent?.process === process) this.#agent = undefined; // look again next time
      });
    }
    return this.#agent.process;
  }

  constructor(spec: RuntimeSandboxSpec, setup: SandboxSetup) {
    this.id = spec.id;
    this.#spec = spec;
    this.#setup = setup;
    this.#fifos = new FifoPool(join(setup.dir, "pool"), setup.uid, setup.gid);
    this.#cgroup = new SandboxCgroup(setup.cgroupVersion, `${setup.cgroupPrefix}-${spec.id}`);
    this.died = new Promise((resolve) => {
      this.#markDied = resolve;
    });
  }

  /** Takes on a sandbox's identity: its id (and cgroup name), environment and limits. */
  async adopt(spec: RuntimeSandboxSpec, limits: Parameters<SandboxCgroup["setLimits"]>[0]): Promise<void> {
    await this.#cgroup.setLimits(limits);
    await this.#cgroup.rename(`${this.#setup.cgroupPrefix}-${spec.id}`);
    this.id = spec.id;
    this.#spec = spec;
  }

  get #paths() {
    const dir = this.#setup.dir;
    return {
      upper: join(dir, "upper"),
      work: join(dir, "work"),
      rootfs: join(dir, "rootfs"),
      ctl: join(dir, "ctl"),
    };
  }

  async start(): Promise<void> {
    const { uid, gid } = this.#setup;
    const paths = this.#paths;
    await Promise.all(Object.values(paths).map((p) => mkdir(p, { recursive: true })));
    // The control dir is root's: the sandbox sees it (as /.sbx) and uses the FIFOs the server
    // made in it, but cannot add, swap or remove anything there (a symlink planted in it would
    // otherwise be followed by the server, as root). Rebuilt on every start.
    await Promise.all(
      ["ctl", "events", "p"].map((name) => rm(join(paths.ctl, name), { recursive: true, force: true })),
    );
    await Promise.all([
      chown(paths.upper, uid, gid),
      chown(paths.ctl, 0, 0).then(() => chmod(paths.ctl, 0o755)),
      mkdir(join(paths.ctl, "p"), { mode: 0o755 }),
      writeFile(join(paths.ctl, "agent.py"), "", { flag: "a" }), // bwrap's mount point for the agent
    ]);
    await Promise.all([
      mountOverlay(this.#setup.image, paths.upper, paths.work, paths.rootfs),
      this.#cgroup.create({
        cpuLimit: this.#spec.cpuLimit,
        memoryLimitMiB: this.#setup.memoryMiB,
        pidsLimit: this.#setup.pidsLimit,
      }),
      this.#fifos.fill([join(paths.ctl, "ctl"), join(paths.ctl, "events")]),
    ]);
    this.#events = openFifoReader(join(paths.ctl, "events"));
    this.#control = openFifoWriter(join(paths.ctl, "ctl"));
    this.#listen(this.#events);
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
  }

  #spawn(): void {
    const { uid, gid, seccomp } = this.#setup;
    const paths = this.#paths;
    const bwrap = [
      "bwrap",
      "--unshare-user",
      "--unshare-pid",
      "--unshare-ipc",
      "--unshare-uts",
      "--unshare-net",
      "--unshare-cgroup-try",
      "--uid",
      "0",
      "--gid",
      "0",
      "--hostname",
      "sandbox",
      "--die-with-parent",
      "--new-session",
      "--cap-drop",
      "ALL",
      "--bind",
      paths.rootfs,
      "/",
      "--ro-bind",
      "/usr",
      "/usr",
      "--proc",
      "/proc",
      "--dev",
      "/dev",
      "--tmpfs",
      "/tmp",
      "--bind",
      paths.ctl,
      "/.sbx",
      "--ro-bind",
      AGENT,
      "/.sbx/agent.py",
      "--chdir",
      "/",
      "--clearenv",
      "--setenv",
      "PATH",
      BASE_ENV.PATH,
      "--seccomp",
      "3",
      "--as-pid-1",
      "/usr/bin/python3",
      "-I",
      "-S",
      "/.sbx/agent.py",
    ];
    const join_cgroups =
      'for d in "$@"; do case "$d" in --) shift; break;; esac; echo $$ > "$d/cgroup.procs"; shift; done; exec "$@"';
    const { openSync } = require_fs();
    const seccompFd = openSync(seccomp, "r");
    const child = spawn(
      "/bin/sh",
      [
        "-c",
        join_cgroups,
        "sbx-launch",
        ...this.#cgroup.dirs,
        "--",
        "setpriv",
        `--reuid=${uid}`,
        `--regid=${gid}`,
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        ...bwrap,
      ],
      { stdio: ["ignore", "ignore", "pipe", seccompFd], env: {} },
    );
    closeQuietly(seccompFd);
    this.#child = child;
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (text: string) => {
      if (this.#stderr.length < 4096) this.#stderr += text;
    });
    child.on("exit", () => {
      this.#ready?.reject(new Error(`the sandbox failed to start: ${this.#stderr.trim() || "bwrap exited"}`));
      for (const p of this.#processes.values()) p.sandboxEnded();
      for (const call of this.#fsCalls.values()) call.reject(new RuntimeFsError("other", "the sandbox has ended"));
      this.#fsCalls.clear();
      for (const watcher of this.#watchers.values()) watcher.end();
      this.#watchers.clear();
      this.#markDied();
    });
  }

  #listen(events: Socket): void {
    // Untrusted: the sandbox's own code can write to this pipe (see agent-events.ts).
    const lines = new EventLines();
    events.setEncoding("utf8");
    events.on("data", (text: string) => {
      for (const line of lines.push(text)) {
        const event = line ? parseAgentEvent(line) : undefined;
        if (event) this.#onEvent(event);
      }
    });
    events.on("error", () => {});
  }

  #onEvent(event: AgentEvent): void {
    switch (event.ev) {
      case "ready":
        // The agent holds both control FIFOs open now, and no sandboxed code has run yet:
        // unlinked, they cannot be opened by anything in the sandbox (to forge answers or
        // swallow requests). Rebuilt by the next start.
        for (const name of ["ctl", "events"]) rm(join(this.#paths.ctl, name), { force: true }).catch(() => {});
        this.#ready?.resolve();
        return;
      case "started":
        this.#processes.get(event.id)?.started(event.pid);
        return;
      case "failed":
        this.#processes.get(event.id)?.failed(new Error(event.error));
        return;
      case "fs": {
        const call = this.#fsCalls.get(event.id);
        this.#fsCalls.delete(event.id);
        if (event.error) call?.reject(new RuntimeFsError(event.error.kind, event.error.message));
        else call?.resolve(event.result);
        return;
      }
      case "watch":
        this.#watchers.get(event.id)?.events(event.events);
        return;
      case "exited":
        this.#processes
          .get(event.id)
          ?.exited(
            event.signal !== undefined
              ? { kind: "signaled", signal: event.signal }
              : { kind: "exited", code: event.code ?? 0 },
          );
        return;
      default:
        return;
    }
  }

  /** One JSON-line request to the agent. */
  #send(message: object): void {
    this.#control?.write(`${JSON.stringify(message)}\n`);
  }

  // Call ids are random: sandboxed code can write the agent's event pipe, and must not be
  // able to guess which answer the server waits for next.
  #agentCall(
    op: string,
    fields: Record<string, unknown>,
    id = `c${randomBytes(12).toString("hex")}`,
  ): Promise<unknown> {
    if (this.#destroyed) return Promise.reject(new RuntimeFsError("other", "the sandbox has ended"));
    return new Promise((resolve, reject) => {
      this.#fsCalls.set(id, { resolve, reject });
      this.#send({ ...fields, op, id });
    });
  }

  async exec(spec: RuntimeProcessSpec): Promise<RuntimeProcess> {
    if (this.#destroyed) throw new Error("the sandbox has been destroyed");
    const id = String(++this.#counter);
    const hostDir = join(this.#paths.ctl, "p", id);
    const sandboxDir = `/.sbx/p/${id}`;
    // Merged (or a terminal): the process has one output pipe, so order is preserved.
    const ends = await this.#fifos.take(hostDir, !(spec.mergeStderr || spec.pty));
    const process = new LocalProcess(ends.stdout, ends.stderr, ends.stdin, () =>
      rm(hostDir, { recursive: true, force: true }).catch(() => {}),
    );
    this.#processes.set(id, process);
    process.exit.finally(() => this.#processes.delete(id));
    const request = {
      op: "exec",
      id,
      argv: spec.argv,
      env: { ...BASE_ENV, ...(spec.pty ? { TERM: "xterm-256color" } : {}), ...this.#spec.env, ...spec.env },
      cwd: spec.workdir ?? this.#spec.workdir ?? "/",
      dir: sandboxDir,
      stderr: spec.mergeStderr || spec.pty ? "stdout" : "pipe",
      ...(spec.pty ? { pty: { rows: spec.ptySize?.rows || 24, cols: spec.ptySize?.cols || 80 } } : {}),
    };
    this.#send(request);
    process.signalSender = (signal) => this.#send({ op: "signal", id, signal });
    process.resizer = (rows, cols) => this.#send({ op: "resize", id, rows, cols });
    await process.whenStarted;
    return process;
  }

  destroy(): Promise<void> {
    this.#destroyed ??= (async () => {
      await this.#cgroup.destroy();
      this.#child?.kill("SIGKILL");
      for (const p of this.#processes.values()) p.sandboxEnded();
      this.#events?.destroy();
      this.#control?.destroy();
      await run("umount", ["-l", this.#paths.rootfs]).catch(() => {});
      await rm(this.#setup.dir, { recursive: true, force: true }).catch(() => {});
    })();
    return this.#destroyed;
  }
}

/** Extra time for a process's output to drain after it exits (daemons may hold it open). */
const DRAIN_GRACE_MS = 1_000;

class LocalProcess implements RuntimeProcess {
  pid = 0;
  readonly exit: Promise<RuntimeExit>;
  readonly whenStarted: Promise<void>;
  signalSender: ((signal: number) => void) | undefined;
  resizer: ((rows: number, cols: number) => void) | undefined;
  #resolveExit!: (exit: RuntimeExit) => void;
  #started!: { resolve: () => void; reject: (e: Error) => void };
  #exit: RuntimeExit | undefined;
  readonly #open = new Set<Socket>();
  readonly #stdout: Socket;
  readonly #stderr: Socket | undefined;
  readonly #stdin: Socket;

  constructor(stdout: Socket, stderr: Socket | undefined, stdin: Socket, cleanup: () => Promise<void>) {
    this.#stdout = stdout;
    this.#stderr = stderr;
    this.#stdin = stdin;
    this.exit = new Promise((resolve) => {
      this.#resolveExit = resolve;
    });
    this.exit.then(cleanup);
    this.whenStarted = new Promise((resolve, reject) => {
      this.#started = { resolve, reject };
    });
    for (const s of stderr ? [stdout, stderr] : [stdout]) {
      this.#open.add(s);
      s.pause();
      paceReads(s); // a trickling writer must not wake the server once per byte
      s.on("close", () => {
        this.#open.delete(s);
        this.#maybeDone();
      });
      s.on("error", () => {});
    }
    stdin.on("error", () => {});
  }

  onStdout(listener: (chunk: Uint8Array) => void): void {
    this.#stdout.on("data", listener);
    this.#stdout.resume();
  }

  onStderr(listener: (chunk: Uint8Array) => void): void {
    this.#stderr?.on("data", listener);
    this.#stderr?.resume();
  }

  writeStdin(data: Uint8Array): Promise<void> {
    return new Promise((resolve) => {
      if (this.#stdin.destroyed || this.#stdin.writableEnded) return resolve();
      this.#stdin.write(data, () => resolve());
    });
  }

  closeStdin(): Promise<void> {
    return new Promise((resolve) => {
      if (this.#stdin.destroyed || this.#stdin.writableEnded) return resolve();
      this.#stdin.end(() => resolve());
    });
  }

  signal(signal: number): void {
    if (!this.#exit) this.signalSender?.(signal);
  }

  resize(rows: number, cols: number): void {
    if (!this.#exit) this.resizer?.(rows, cols);
  }

  started(pid: number): void {
    this.pid = pid;
    this.#started.resolve();
  }

  failed(error: Error): void {
    this.#started.reject(error);
    this.exited({ kind: "exited", code: 127 });
  }

  exited(exit: RuntimeExit): void {
    if (this.#exit) return;
    this.#exit = exit;
    this.#started.resolve();
    this.#stdin.destroy();
    setTimeout(() => {
      for (const s of this.#open) s.destroy();
    }, DRAIN_GRACE_MS).unref();
    this.#maybeDone();
  }

  /** The sandbox is gone: whatever has not exited was killed with it. */
  sandboxEnded(): void {
    this.exited({ kind: "signaled", signal: 9 });
    for (const s of this.#open) s.destroy();
  }

  #maybeDone(): void {
    if (this.#exit && this.#open.size === 0) this.#resolveExit(this.#exit);
  }
}

async function mountOverlay(lower: string, upper: string, work: string, target: string): Promise<void> {
  await run("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${lower},upperdir=${upper},workdir=${work}`, target]);
}

async function which(tool: string): Promise<boolean> {
  try {
    await run("sh", ["-c", `command -v ${tool}`]);
    return true;
  } catch {
    return false;
  }
}

const firstLine = (error: unknown) =>
  String((error as { stderr?: string }).stderr || (error as Error).message).split("\n")[0];

import * as fs from "node:fs";

const require_fs = () => fs;
const closeQuietly = (fd: number) => {
  try {
    fs.closeSync(fd);
  } catch {}
};
