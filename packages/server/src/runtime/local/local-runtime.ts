/**
 * The `local` runtime: each sandbox is a bubblewrap container on this machine.
 *
 *   root (the server) ── creates the sandbox's disk and overlay root, its cgroup and the
 *   control FIFOs, then
 *     sh (joins the cgroup) → unshare + sh (a private mount namespace where the root and the
 *       control dir are bound on /mnt, see LAUNCH_SCRIPT) → setpriv (drops to the sandbox's
 *       own uid, no caps) → bwrap (new user/pid/mount/ipc/uts/net/cgroup namespaces,
 *       seccomp, no_new_privs)
 *         → agent.py as pid 1, which starts every process of the sandbox.
 *
 * Everything of a sandbox on the host lives under a root-only (0700) dir, on mounts that are
 * nosuid,nodev: no host account can reach its files, and none planted there runs as its uid.
 *
 * Everything in a sandbox descends from bwrap, so it shares the namespaces, root, cgroup
 * and filter; destroying the cgroup kills all of it, daemons included.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, chown, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import type { Socket } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import {
  RuntimeDeadlineError,
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
import { type AgentCallOptions, AgentFilesystem, type WatchListener } from "./agent-filesystem.js";
import { type CgroupVersion, cgroupProblems, cleanupCgroups, detectCgroupVersion, SandboxCgroup } from "./cgroups.js";
import { FifoPool, openFifoReader, openFifoWriter, removeChannel } from "./fifo.js";
import { claimLayer, type DefaultImage, ensureDefaultImage, USR_DIRS } from "./image.js";
import { type PacedReads, paceReads } from "./read-pacing.js";
import {
  createSandboxDisk,
  type DiskSource,
  ensureDiskTemplate,
  MIN_DISK_MIB,
  removeSandboxDisk,
} from "./sandbox-disk.js";
import { seccompProgram, seccompSupported } from "./seccomp.js";
import { UidAllocator, type UidRange, uidRangeProblems } from "./uid-range.js";

const run = promisify(execFile);
const AGENT = join(dirname(fileURLToPath(import.meta.url)), "agent.py");
const BASE_ENV = {
  // /opt/sbx/bin last: the image's fallbacks (e.g. `python` → python3) never shadow the system's.
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/sbx/bin",
  HOME: "/root",
  LANG: "C.UTF-8",
};

/**
 * Where bwrap finds the sandbox's root: in the launcher's private mount namespace the root is
 * bound here (any existing dir every user may traverse; what it holds on the host is hidden
 * only in that namespace). bwrap resolves its paths as the unprivileged sandbox uid, and the
 * layers' own dir is root's (0700).
 */
const LAUNCH_ROOT = "/mnt";

/**
 * Run as root in the private mount namespace: $1 the sandbox's root, $2 its control dir (root's,
 * holding a copy of the agent); then the rest (setpriv … bwrap …). Nothing here reaches the host.
 */
const LAUNCH_SCRIPT = `set -e
mount --bind "$1" ${LAUNCH_ROOT}
mount --bind -o nosuid,nodev,noexec "$2" ${LAUNCH_ROOT}/.sbx
shift 2
exec "$@"`;

/** The agent's source, read once: each sandbox gets a root-owned copy in its control dir. */
let agentSource: Promise<Buffer> | undefined;
const agentCode = () => {
  agentSource ??= readFile(AGENT);
  return agentSource;
};

export interface LocalRuntimeOptions {
  /** Where images, per-sandbox layers and control files live. */
  readonly dataDir: string;
  /**
   * Host uids for sandboxes: each live sandbox runs as its own uid (and the same gid) from this
   * range, which must not overlap any id in /etc/passwd, /etc/group, /etc/subuid or
   * /etc/subgid, and must end below 2^31. Default: 65,536 ids from 2,000,000,000 plus one of
   * 2,048 blocks picked by the data dir (two servers on one machine should still be given
   * ranges of their own).
   */
  readonly sandboxUids?: UidRange;
  /** Capacity of a sandbox's writable layer when it sets none. Default 10,240 MiB (10 GiB). */
  readonly defaultDiskMiB?: number;
  /** Memory limit when a sandbox sets none. Default 1024 MiB. */
  readonly defaultMemoryMiB?: number;
  /** Process/thread limit per sandbox. Default 512. */
  readonly pidsLimit?: number;
  /** Sandboxes kept started ahead of demand (0 disables). Default 2. */
  readonly warmPoolSize?: number;
  /**
   * How long a file call waits for the sandbox's agent before failing with a deadline error
   * (the agent is stopped, or swamped). Default 60 s.
   */
  readonly agentCallTimeoutMs?: number;
}

/** Answers the agent gave after their caller gave up, still to undo; kept at most this many. */
const MAX_ABANDONED_CALLS = 1024;
/** Sandboxes' soft open-files limit (see #spawn). */
export const SANDBOX_OPEN_FILES = 1024;

export function createLocalRuntime(options: LocalRuntimeOptions): SandboxRuntime {
  return new LocalRuntime(options);
}

class LocalRuntime implements SandboxRuntime {
  readonly name = "local";
  readonly #dir: string;
  readonly #instance: string;
  readonly #uidRange: UidRange;
  readonly #uids: UidAllocator;
  readonly #defaultDiskMiB: number;
  readonly #options: LocalRuntimeOptions;
  readonly #sandboxes = new Map<string, LocalSandbox>();
  #image: Promise<DefaultImage> | undefined;
  /** The default-size disk, ready made: most disks are a sparse copy of it. */
  #diskTemplate: Promise<string> | undefined;
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
    this.#uidRange = options.sandboxUids ?? {
      start: 2_000_000_000 + (Number.parseInt(this.#instance.slice(0, 6), 16) % 2048) * 65_536,
      count: 65_536,
    };
    this.#uids = new UidAllocator(this.#uidRange);
    this.#defaultDiskMiB = options.defaultDiskMiB ?? 10_240;
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
      ["unshare", "util-linux"],
      ["mkfifo", "coreutils"],
      ["mount", "mount"],
      ["mkfs.ext4", "e2fsprogs"],
    ] as const) {
      if (!(await which(tool))) problems.push(`${tool} is missing: install it with 'apt-get install ${pkg}'`);
    }
    if (!existsSync("/usr/bin/python3")) {
      problems.push(
        "/usr/bin/python3 is missing (it runs the sandbox agent): install it with 'apt-get install python3'",
      );
    }
    if (!existsSync(LAUNCH_ROOT))
      problems.push(`${LAUNCH_ROOT} is missing (sandboxes are launched from it): mkdir ${LAUNCH_ROOT}`);
    problems.push(...(await uidRangeProblems(this.#uidRange)));
    problems.push(...(await cgroupProblems()));
    if (problems.length > 0) return problems;
    try {
      await run("setpriv", [
        `--reuid=${this.#uidRange.start}`,
        `--regid=${this.#uidRange.start}`,
        "--clear-groups",
        "bwrap",
        "--unshare-all",
        ...usrBinds(),
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
      // A full or unwritable data dir fails every later probe too: name it once.
      problems.push(dataDirProblem(this.#dir, error) ?? overlayProblem(this.#dir, error));
      return problems;
    }
    try {
      await this.#probeDisk();
    } catch (error) {
      problems.push(
        dataDirProblem(this.#dir, error) ??
          `cannot mount an ext4 image on a loop device under ${this.#dir} (${firstLine(error)}): load the loop module (modprobe loop) and give the server /dev/loop-control`,
      );
    }
    return problems;
  }

  async #probeOverlay(): Promise<void> {
    const probe = join(this.#dir, `overlay-probe-${process.pid}`);
    try {
      await Promise.all(["lower", "upper", "work", "merged"].map((d) => mkdir(join(probe, d), { recursive: true })));
      // Sandboxes need room in the data dir, not only a mount: a full disk shows up here.
      await writeFile(join(probe, "space"), new Uint8Array(4096));
      await mountOverlay(join(probe, "lower"), join(probe, "upper"), join(probe, "work"), join(probe, "merged"));
      await run("umount", [join(probe, "merged")]);
    } finally {
      await rm(probe, { recursive: true, force: true });
    }
  }

  /** Sandbox disks are sparse ext4 images on loop devices (see sandbox-disk.ts). */
  async #probeDisk(): Promise<void> {
    const probe = join(this.#dir, `disk-probe-${process.pid}`);
    await mkdir(probe, { recursive: true, mode: 0o700 });
    try {
      await createSandboxDisk(probe, MIN_DISK_MIB);
    } finally {
      await removeSandboxDisk(probe);
      await rm(probe, { recursive: true, force: true });
    }
  }

  async createSandbox(spec: RuntimeSandboxSpec): Promise<RuntimeSandbox> {
    if (spec.image) throw new Error(`unknown image ${JSON.stringify(spec.image)}`);
    if (this.#closed) throw new Error("the runtime is closed");
    const limits = this.#limitsOf(spec);
    // A pre-started sandbox takes on the new one's id, environment and limits; its disk was
    // made with the default size, so a sandbox asking for another starts cold.
    const warm = this.#diskOf(spec) === this.#defaultDiskMiB ? this.#warm.shift() : undefined;
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

  #diskOf(spec: RuntimeSandboxSpec): number {
    return spec.diskMiB ?? this.#defaultDiskMiB;
  }

  async #start(spec: RuntimeSandboxSpec): Promise<LocalSandbox> {
    this.#prepared ??= this.#prepare();
    await this.#prepared;
    const version = detectCgroupVersion();
    if (!version) throw new Error("no usable cgroup hierarchy");
    this.#image ??= forgetOnFailure(ensureDefaultImage(join(this.#dir, "images")), () => {
      this.#image = undefined;
    });
    this.#seccompFile ??= forgetOnFailure(this.#writeSeccomp(), () => {
      this.#seccompFile = undefined;
    });
    const [image, seccomp] = await Promise.all([this.#image, this.#seccompFile]);
    const diskMiB = this.#diskOf(spec);
    let diskSource: DiskSource = { contents: image.layer };
    if (diskMiB === this.#defaultDiskMiB) {
      this.#diskTemplate ??= forgetOnFailure(
        ensureDiskTemplate(join(image.lower, "..", `disk-${diskMiB}.img`), diskMiB, image.layer),
        () => {
          this.#diskTemplate = undefined;
        },
      );
      diskSource = { template: await this.#diskTemplate };
    }
    const limits = this.#limitsOf(spec);
    // Its own uid while it lives: freed by destroy, once nothing of the sandbox runs.
    const uid = this.#uids.allocate();
    const sandbox = new LocalSandbox(spec, {
      dir: join(this.#dir, "sandboxes", spec.id),
      image,
      seccomp,
      uid,
      gid: uid,
      releaseUid: () => this.#uids.release(uid),
      diskMiB,
      diskSource,
      cgroupVersion: version,
      cgroupPrefix: this.#instance,
      memoryMiB: limits.memoryLimitMiB,
      pidsLimit: limits.pidsLimit,
      agentCallTimeoutMs: this.#options.agentCallTimeoutMs ?? 60_000,
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

  /** Root's alone: no host account (nor any sandbox uid) reaches a sandbox's layers by path. */
  async #prepare(): Promise<void> {
    await mkdir(join(this.#dir, "sandboxes"), { recursive: true, mode: 0o700 });
    await chmod(this.#dir, 0o700);
    await chmod(join(this.#dir, "sandboxes"), 0o700);
  }

  async #writeSeccomp(): Promise<string> {
    const file = join(this.#dir, "seccomp.bpf");
    await mkdir(this.#dir, { recursive: true });
    await writeFile(file, seccompProgram(), { mode: 0o644 });
    return file;
  }

  async cleanupLeftovers(): Promise<void> {
    // Processes first (their mount namespaces hold the mounts), then mounts, then files. A
    // leftover tree is removed only once nothing sandboxed is alive to race the removal (swap
    // a dir for a symlink to a host dir between its checks); then every uid of the range is
    // free again, nothing of an earlier run being left to own one.
    const version = detectCgroupVersion();
    const emptied = version ? await cleanupCgroups(version, this.#instance) : true;
    const root = join(this.#dir, "sandboxes");
    for (const entry of await readdir(root).catch(() => [] as string[])) {
      await run("umount", ["-l", join(root, entry, "rootfs")]).catch(() => {});
      await removeSandboxDisk(join(root, entry));
      if (emptied) await rm(join(root, entry), { recursive: true, force: true }).catch(() => {});
    }
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
  readonly image: DefaultImage;
  readonly seccomp: string;
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
  /** Calls given up on (aborted or past the deadline) whose successful answer must be undone. */
  readonly #abandoned = new Map<string, (answer: unknown) => void>();
  readonly #watchers = new Map<string, WatchListener>();
  #destroyed: Promise<void> | undefined;
  #agent: { child: ChildProcess; process: Promise<AgentProcess> } | undefined;
  #stderr = "";
  readonly #fifos: FifoPool;
  readonly fs = new AgentFilesystem({
    call: (op, fields, options) => this.#agentCall(op, fields, options),
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
        answered: this.#agentCall("watch", fields, {}, id),
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

  /**
   * The control dir is root's: the sandbox sees it (as /.sbx) and uses the FIFOs the server
   * made in it, but cannot add, swap or remove anything there (a symlink planted in it would
   * otherwise be followed by the server, as root). Rebuilt on every start. Nothing under it is
   * the sandbox's to write (channel dirs are root's too), and no process of it runs yet.
   */
  async #prepareControl(): Promise<void> {
    const ctl = this.#paths.ctl;
    await Promise.all(["ctl", "events", "p"].map((name) => rm(join(ctl, name), { recursive: true, force: true })));
    await Promise.all([
      chown(ctl, 0, 0).then(() => chmod(ctl, 0o755)),
      mkdir(join(ctl, "p"), { mode: 0o711 }), // traversable, not listable: see exec
      agentCode().then((code) => writeFile(join(ctl, "agent.py"), code, { mode: 0o644 })),
    ]);
    await this.#fifos.fill([join(ctl, "ctl"), join(ctl, "events")]);
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
      // The root with /.sbx and its agent already bound in (see LAUNCH_SCRIPT).
      "--bind",
      LAUNCH_ROOT,
      "/",
      // /usr is read-only (EROFS, as the host's /usr it mostly is), but for the sandbox's own
      // /usr/local from its layer; its allowlisted subtrees come from the host.
      "--ro-bind",
      `${LAUNCH_ROOT}/usr`,
      "/usr",
      ...usrBinds(),
      "--bind",
      `${LAUNCH_ROOT}/usr/local`,
      "/usr/local",
      "--proc",
      "/proc",
      "--dev",
      "/dev",
      "--tmpfs",
      "/tmp",
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
    // Nothing runs outside its cgroups: destroy() relies on killing the cgroup to know that no
    // sandboxed process is left before it removes the sandbox's files. Sandboxes get the usual
    // soft open-files limit back (the server raised its own, see open-files-limit.ts): 1024, as
    // systemd gives services, because select() and programs that walk every possible descriptor
    // break or crawl with more; the hard limit stays, so a program that wants more can ask.
    const join_cgroups = `ulimit -S -n ${SANDBOX_OPEN_FILES} 2>/dev/null; for d in "$@"; do case "$d" in --) shift; break;; esac; echo $$ > "$d/cgroup.procs" || exit 1; shift; done; exec "$@"`;
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
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        LAUNCH_SCRIPT,
        "sbx-mount",
        paths.rootfs,
        paths.ctl,
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
      for (const call of [...this.#fsCalls.values()]) call.reject(new RuntimeFsError("other", "the sandbox has ended"));
      this.#fsCalls.clear();
      this.#abandoned.clear();
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
        if (!call) {
          const undo = this.#abandoned.get(event.id);
          this.#abandoned.delete(event.id);
          if (undo && !event.error) undo(event.result);
          return;
        }
        if (event.error) call.reject(new RuntimeFsError(event.error.kind, event.error.message));
        else call.resolve(event.result);
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

  /** Calls waiting for the agent, and answers still to undo (for tests: nothing may pile up). */
  get agentCalls(): { readonly waiting: number; readonly abandoned: number } {
    return { waiting: this.#fsCalls.size, abandoned: this.#abandoned.size };
  }

  // Call ids are random: sandboxed code can write the agent's event pipe, and must not be
  // able to guess which answer the server waits for next.
  #agentCall(
    op: string,
    fields: Record<string, unknown>,
    { signal, undo }: AgentCallOptions = {},
    id = `c${randomBytes(12).toString("hex")}`,
  ): Promise<unknown> {
    if (this.#destroyed) return Promise.reject(new RuntimeFsError("other", "the sandbox has ended"));
    if (signal?.aborted) return Promise.reject(signal.reason);
    const limitMs = this.#setup.agentCallTimeoutMs;
    return new Promise((resolve, reject) => {
      const settle = () => {
        clearTimeout(deadline);
        signal?.removeEventListener("abort", onAbort);
        this.#fsCalls.delete(id);
      };
      // Given up: the entry goes now; an answer that still comes is undone (see #onEvent).
      const giveUp = (error: unknown) => {
        settle();
        if (undo) this.#abandon(id, undo);
        reject(error);
      };
      const onAbort = () => giveUp(signal?.reason);
      const deadline = setTimeout(
        () =>
          giveUp(
            new RuntimeDeadlineError(
              `the sandbox did not answer ${op} within ${limitMs / 1000} s (it may be overloaded or stopped)`,
            ),
          ),
        limitMs,
      );
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#fsCalls.set(id, {
        resolve: (result) => {
          settle();
          resolve(result);
        },
        reject: (error) => {
          settle();
          reject(error);
        },
      });
      this.#send({ ...fields, op, id });
    });
  }

  #abandon(id: string, undo: (answer: unknown) => void): void {
    // An agent that never answers must not grow this without end: the oldest are forgotten.
    if (this.#abandoned.size >= MAX_ABANDONED_CALLS) {
      const oldest = this.#abandoned.keys().next().value;
      if (oldest !== undefined) this.#abandoned.delete(oldest);
    }
    this.#abandoned.set(id, undo);
  }

  async exec(spec: RuntimeProcessSpec): Promise<RuntimeProcess> {
    if (this.#destroyed) throw new Error("the sandbox has been destroyed");
    const id = String(++this.#counter);
    // An unguessable name in a dir the sandbox cannot list (0711), so no process can find the
    // channel by name; the channel dir is root's, so nothing sandboxed can be put in it. Its
    // FIFOs are unlinked as soon as the agent has opened them (it says "started" or "failed").
    // This keeps names out of reach, not the pipes: another process of the sandbox (same uid)
    // can still open a running command's stdio through /proc/<pid>/fd.
    const channel = randomBytes(16).toString("hex");
    const hostDir = join(this.#paths.ctl, "p", channel);
    const sandboxDir = `/.sbx/p/${channel}`;
    // Merged (or a terminal): the process has one output pipe, so order is preserved.
    const ends = await this.#fifos.take(hostDir, !(spec.mergeStderr || spec.pty));
    const process = new LocalProcess(ends.stdout, ends.stderr, ends.stdin, () =>
      removeChannel(hostDir).catch(() => {}),
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
      const emptied = await this.#cgroup.destroy();
      this.#child?.kill("SIGKILL");
      for (const p of this.#processes.values()) p.sandboxEnded();
      this.#events?.destroy();
      this.#control?.destroy();
      await run("umount", ["-l", this.#paths.rootfs]).catch(() => {});
      await removeSandboxDisk(this.#setup.dir);
      // Only once no sandboxed process is left: none can race the removal, and none still runs
      // as the uid. Else both wait for cleanupLeftovers at the next start.
      if (emptied) {
        await rm(this.#setup.dir, { recursive: true, force: true }).catch(() => {});
        this.#setup.releaseUid();
      }
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
  /** Each output stream's pacing: back-pressure pauses through it (see read-pacing.ts). */
  readonly #paced = new Map<Socket, PacedReads>();
  readonly #stdout: Socket;
  readonly #stderr: Socket | undefined;
  readonly #stdin: Socket;
  #outputPaused = false;
  #drainGrace: NodeJS.Timeout | undefined;

  /**
   * Removes the stdio channel's names: once the agent has opened them (started or failed), or
   * when the process ends without the agent saying so.
   */
  #releaseChannel: (() => void) | undefined;

  constructor(stdout: Socket, stderr: Socket | undefined, stdin: Socket, releaseChannel: () => Promise<void>) {
    this.#stdout = stdout;
    this.#stderr = stderr;
    this.#stdin = stdin;
    this.#releaseChannel = () => {
      this.#releaseChannel = undefined;
      void releaseChannel();
    };
    this.exit = new Promise((resolve) => {
      this.#resolveExit = resolve;
    });
    this.whenStarted = new Promise((resolve, reject) => {
      this.#started = { resolve, reject };
    });
    for (const s of stderr ? [stdout, stderr] : [stdout]) {
      this.#open.add(s);
      s.pause();
      this.#paced.set(s, paceReads(s)); // a trickling writer must not wake the server once per byte
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

  pauseOutput(): void {
    if (this.#outputPaused) return;
    this.#outputPaused = true;
    for (const paced of this.#paced.values()) paced.hold();
  }

  resumeOutput(): void {
    if (!this.#outputPaused) return;
    this.#outputPaused = false;
    for (const paced of this.#paced.values()) paced.release();
    if (this.#exit) this.#startDrainGrace();
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
    this.#releaseChannel?.();
    this.#started.resolve();
  }

  failed(error: Error): void {
    this.#started.reject(error);
    this.exited({ kind: "exited", code: 127 });
  }

  exited(exit: RuntimeExit): void {
    this.#releaseChannel?.(); // failed, or ended without a word from the agent
    if (this.#exit) return;
    this.#exit = exit;
    this.#started.resolve();
    this.#stdin.destroy();
    // Paused by back-pressure: what is left in the pipes is read (and the grace starts) on resume.
    if (!this.#outputPaused) this.#startDrainGrace();
    this.#maybeDone();
  }

  #startDrainGrace(): void {
    this.#drainGrace ??= setTimeout(() => {
      for (const s of this.#open) s.destroy();
    }, DRAIN_GRACE_MS).unref();
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

/** A failed probe caused by the data dir itself (full, read-only, unwritable), if it was. */
function dataDirProblem(dir: string, error: unknown): string | undefined {
  const code = (error as NodeJS.ErrnoException).code;
  const reason = firstLine(error) ?? String(error);
  if (code === "ENOSPC" || code === "EDQUOT" || /no space left|quota exceeded/i.test(reason)) {
    return `the data dir's filesystem is full (${reason}): free space under ${dir}, or use another --data-dir`;
  }
  if (code === "EROFS" || /read-only file system/i.test(reason)) {
    return `the data dir is on a read-only filesystem (${reason}): use a writable --data-dir`;
  }
  if (typeof code === "string") return `cannot write to the data dir ${dir} (${reason})`;
  return undefined;
}

const overlayProblem = (dir: string, error: unknown) =>
  `cannot mount overlayfs under ${dir} (${firstLine(error) ?? String(error)}): load the overlay module (modprobe overlay)`;

/** nosuid,nodev: a setuid file or device node planted in a layer is inert on the host too. */
async function mountOverlay(lower: string, upper: string, work: string, target: string): Promise<void> {
  await run("mount", [
    "-t",
    "overlay",
    "overlay",
    "-o",
    `nosuid,nodev,lowerdir=${lower},upperdir=${upper},workdir=${work}`,
    target,
  ]);
}

/** bwrap arguments binding the allowlisted subtrees of the host's /usr read-only (see image.ts). */
function usrBinds(): string[] {
  return USR_DIRS.flatMap((d) => ["--ro-bind-try", `/usr/${d}`, `/usr/${d}`]);
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

/** Waits for every promise to settle, then fails with the first failure (if any). */
async function settleAll(steps: readonly Promise<unknown>[]): Promise<void> {
  const results = await Promise.allSettled(steps);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}

/** A cached one-time step whose failure is not kept: the next caller tries again. */
function forgetOnFailure<T>(step: Promise<T>, forget: () => void): Promise<T> {
  step.catch(forget);
  return step;
}
