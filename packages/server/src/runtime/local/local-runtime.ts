/**
 * The `local` runtime: each sandbox is a bubblewrap container on this machine. This file wires
 * the rooms together as a `SandboxRuntime`: what each sandbox is given (uid, image, disk,
 * seccomp file, cgroup name), the warm pool, and cleanup after a crash.
 *
 *   root (the server) ── creates the sandbox's disk and overlay root, its cgroup and the
 *   control FIFOs (local-sandbox.ts), then launches it (launch-command.ts):
 *     sh (joins the cgroup) → unshare + sh (a private mount namespace) → setpriv (drops to the
 *       sandbox's own uid, no caps) → bwrap (new user/pid/mount/ipc/uts/net/cgroup namespaces,
 *       seccomp, no_new_privs)
 *         → the agent as pid 1 (a static binary, agent-binary.ts), which starts every process
 *           of the sandbox; the server speaks to it over two FIFOs (agent-connection.ts).
 *
 * Everything of a sandbox on the host lives under a root-only (0700) dir, on mounts that are
 * nosuid,nodev: no host account can reach its files, and none planted there runs as its uid.
 *
 * Everything in a sandbox descends from bwrap, so it shares the namespaces, root, cgroup
 * and filter; destroying the cgroup kills all of it, daemons included.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { chmod, mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import type { RuntimeSandbox, RuntimeSandboxSpec, SandboxRuntime } from "@sbx/server-kit";
import { installAgent } from "./agent-binary.js";
import { cleanupCgroups, detectCgroupVersion } from "./cgroups.js";
import { type DefaultImage, ensureDefaultImage } from "./image.js";
import { LocalSandbox } from "./local-sandbox.js";
import { localRuntimeProblems } from "./prerequisites.js";
import { type DiskSource, ensureDiskTemplate, removeSandboxDisk } from "./sandbox-disk.js";
import { seccompProgram } from "./seccomp.js";
import { UidAllocator, type UidRange } from "./uid-range.js";
import { WarmPool } from "./warm-pool.js";

const run = promisify(execFile);

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
  /** The sandboxes not yet destroyed, by id. */
  readonly #sandboxes = new Map<string, LocalSandbox>();
  #image: Promise<DefaultImage> | undefined;
  /** The default-size disk, ready made: most disks are a sparse copy of it. */
  #diskTemplate: Promise<string> | undefined;
  #prepared: Promise<void> | undefined;
  readonly #warm: WarmPool<LocalSandbox>;
  #closed = false;
  #seccompFile: Promise<string> | undefined;
  #agentFile: Promise<string> | undefined;

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
    this.#warm = new WarmPool({
      size: options.warmPoolSize ?? 2,
      // Started under a warm id, then no longer the runtime's by id: the pool owns it.
      start: (id) =>
        this.#start({ id, env: {}, blockNetwork: true }).then((sandbox) => {
          this.#sandboxes.delete(id);
          return sandbox;
        }),
    });
  }

  checkPrerequisites(): Promise<string[]> {
    return localRuntimeProblems(this.#dir, this.#uidRange);
  }

  async createSandbox(spec: RuntimeSandboxSpec): Promise<RuntimeSandbox> {
    if (spec.image) throw new Error(`unknown image ${JSON.stringify(spec.image)}`);
    if (this.#closed) throw new Error("the runtime is closed");
    const limits = this.#limitsOf(spec);
    // A pre-started sandbox takes on the new one's id, environment and limits; its disk was
    // made with the default size, so a sandbox asking for another starts cold.
    const warm = this.#diskOf(spec) === this.#defaultDiskMiB ? this.#warm.take() : undefined;
    if (warm) {
      this.#warm.refill();
      try {
        await warm.adopt(spec, limits);
        this.#sandboxes.set(spec.id, warm);
        return warm;
      } catch {
        await warm.destroy();
      }
    }
    const sandbox = await this.#start(spec);
    this.#warm.refill();
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
    this.#agentFile ??= forgetOnFailure(installAgent(this.#dir), () => {
      this.#agentFile = undefined;
    });
    const [image, seccomp, agent] = await Promise.all([this.#image, this.#seccompFile, this.#agentFile]);
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
      agent,
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
      onDestroyed: (gone) => {
        if (this.#sandboxes.get(gone.id) === gone) this.#sandboxes.delete(gone.id);
      },
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
    this.#warm.refill();
  }

  /** How many sandboxes it holds (not yet destroyed); for diagnostics and tests. */
  get sandboxCount(): number {
    return this.#sandboxes.size;
  }

  async close(): Promise<void> {
    this.#closed = true;
    const warm = await this.#warm.close();
    const all = [...this.#sandboxes.values(), ...warm];
    await Promise.all(all.map((s) => s.destroy()));
    this.#sandboxes.clear();
  }
}

/** A cached one-time step whose failure is not kept: the next caller tries again. */
function forgetOnFailure<T>(step: Promise<T>, forget: () => void): Promise<T> {
  step.catch(forget);
  return step;
}
