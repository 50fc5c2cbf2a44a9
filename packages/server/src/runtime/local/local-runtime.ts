/**
 * The `local` runtime: each sandbox is a bubblewrap container on this machine. This file wires
 * the rooms together as a `SandboxRuntime`: what each sandbox is given (uid, image, disk,
 * seccomp file, cgroup name), the warm pool, and cleanup after a crash.
 *
 *   root (the server) ── creates the sandbox's disk and root (root-mount.ts: an overlay of the
 *   default image's skeleton, or of an image's layers from the store, idmapped), its cgroup
 *   and the control FIFOs (local-sandbox.ts), then launches it (launch-command.ts):
 *     sh (joins the cgroup) → unshare + sh (a private mount namespace) → setpriv (drops to the
 *       sandbox's base id, no caps) → bwrap (new user/pid/mount/ipc/uts/net/cgroup namespaces,
 *       seccomp, no_new_privs), whose user namespace the server maps onto the sandbox's block
 *       of 65,536 host ids (userns-handshake.ts)
 *         → the agent as pid 1 (a static binary, agent-binary.ts), which starts every process
 *           of the sandbox (as the image's User); the server speaks to it over two FIFOs
 *           (agent-connection.ts).
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
import type { Socket } from "node:net";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import type {
  ImageRecord,
  RuntimeNetworkSpec,
  RuntimeSandbox,
  RuntimeSandboxSpec,
  SandboxRuntime,
} from "@sbx/server-kit";
import type { TunnelPlane } from "@sbx/server-kit/ingress";
import { installAgent } from "./agent-binary.js";
import { cleanupCgroups, detectCgroupVersion } from "./cgroups.js";
import { claimDefaultRange, claimIdRange, ID_CLAIMS_FILE, type IdRangeClaim } from "./id-range-claim.js";
import { type DefaultImage, defaultImageName, ensureDefaultImage } from "./image.js";
import { type ImageEtc, resolveImageEtc } from "./image-etc.js";
import { ImageUsers } from "./image-users.js";
import { ImageWarmPools } from "./image-warm-pools.js";
import { LocalSandbox } from "./local-sandbox.js";
import { type MountPointLayer, MountPointLayers } from "./mount-point-layers.js";
import { HostNetwork } from "./network/host-network.js";
import { networkPlan, type SandboxNetworkOptions } from "./network/network-options.js";
import { type RelayTunnel, TunnelRelay } from "./network/tunnel-relay.js";
import { localRuntimeProblems } from "./prerequisites.js";
import { QuietPeriod } from "./quiet-period.js";
import { type DiskSource, diskTemplateName, ensureDiskTemplate, removeSandboxDisk } from "./sandbox-disk.js";
import { mountSandboxesDir, unmountSandboxesDir } from "./sandbox-mounts.js";
import {
  defaultRoot,
  imageEtcProblem,
  imageLayerDirs,
  imageRoot,
  imageRootProblem,
  type LayerSource,
  layerStamp,
  type RootRecipe,
} from "./sandbox-root.js";
import { seccompProgram } from "./seccomp.js";
import { removeStaleEntries, staleStaging, staleVersionOf } from "./stale-entries.js";
import {
  busyIdBlocks,
  DEFAULT_LAYER_ID_BASE,
  DEFAULT_SANDBOX_BLOCKS,
  defaultRangeSlot,
  ID_BLOCK,
  IdBlockAllocator,
  type UidRange,
} from "./uid-range.js";
import { WarmPool } from "./warm-pool.js";

const run = promisify(execFile);

/** How many images' /etc resolutions a runtime keeps (see #etcOf). */
const ETC_CACHE = 64;
/** How long an image's /etc that could not be read is answered so before it is read again. */
const ETC_READ_FAILURE_KEPT_MS = 10_000;

/**
 * A warm sandbox's policy while it waits: open, as most creates ask (its agent, the server's,
 * is all that runs there: nothing of a user's can use it), so a create with the network on
 * finds it in force; one asking for another policy has it applied at handout.
 */
const WARM_NETWORK: RuntimeNetworkSpec = Object.freeze({
  blockNetwork: false,
  cidrAllowlist: Object.freeze([]) as readonly string[],
  ports: Object.freeze([]) as readonly number[],
});

export interface LocalRuntimeOptions {
  /** Where images, per-sandbox layers and control files live. */
  readonly dataDir: string;
  /**
   * Host ids for sandboxes, a whole number of blocks of 65,536: each live sandbox gets a block
   * of its own (its uid/gid u is host id BASE+u). The range must not overlap any id in
   * /etc/passwd, /etc/group, /etc/subuid or /etc/subgid, nor the image store's layer ids, and
   * must end at 4,294,967,294 at most. The runtime claims it host-wide while it runs (a range
   * another server holds is refused). Default: 1,024 blocks above 2^31, one of 31 such ranges:
   * the one the data dir picks, else the next one no other server holds (id-range-claim.ts).
   */
  readonly sandboxUids?: UidRange;
  /**
   * Where images' layers are: the server's image store. Absent: sandboxes start from the
   * default image only. Its `layerIdBase` is the canonical block of every root's files.
   */
  readonly layers?: LayerSource;
  /** Capacity of a sandbox's writable layer when it sets none. Default 10,240 MiB (10 GiB). */
  readonly defaultDiskMiB?: number;
  /** Memory limit when a sandbox sets none. Default 1024 MiB. */
  readonly defaultMemoryMiB?: number;
  /** Process/thread limit per sandbox. Default 512. */
  readonly pidsLimit?: number;
  /** Sandboxes kept started ahead of demand (0 disables), of the default image and of each warm image. Default 2. */
  readonly warmPoolSize?: number;
  /**
   * Images of the store whose sandboxes are kept started ahead of demand, once a create has
   * named them: the most recently used ones (0: none). Default 4.
   */
  readonly warmImages?: number;
  /**
   * How long a file call waits for the sandbox's agent before failing with a deadline error
   * (the agent is stopped, or swamped). Default 60 s.
   */
  readonly agentCallTimeoutMs?: number;
  /**
   * The nice value sandboxes run at when the server raised its own priority above it (see
   * scheduling-priority.ts). Absent: sandboxes inherit the server's.
   */
  readonly sandboxNice?: number;
  /** Sandboxes' network: their range, what they may not reach, DNS (see network-options.ts). */
  readonly network?: SandboxNetworkOptions;
  /** Hears what the operator should know (e.g. that IPv4 forwarding was turned on). */
  readonly log?: (message: string, fields?: Record<string, unknown>, level?: "info" | "error") => void;
}

/**
 * The local runtime: the engine's driver, and the server's way into its sandboxes' ports (a
 * connection from the server, `dial`, and tunnels served by the tunnel relay).
 */
export interface LocalSandboxRuntime extends SandboxRuntime, TunnelPlane {
  dial(sandboxId: string, port: number, signal?: AbortSignal): Promise<Socket>;
  handOffTunnel(sandboxId: string, socket: Socket): Promise<boolean>;
}

export function createLocalRuntime(options: LocalRuntimeOptions): LocalSandboxRuntime {
  return new LocalRuntime(options);
}

class LocalRuntime implements SandboxRuntime {
  readonly name = "local";
  readonly #dir: string;
  readonly #instance: string;
  /** Its range of host ids, claimed host-wide the first time it is needed, until close. */
  #claim: Promise<IdRangeClaim> | undefined;
  #range: UidRange | undefined;
  /** The claimed range's blocks (made once the range is claimed). */
  #blocks: IdBlockAllocator | undefined;
  readonly #layerIdBase: number;
  readonly #defaultDiskMiB: number;
  readonly #options: LocalRuntimeOptions;
  /** The sandboxes not yet destroyed, by id. */
  readonly #sandboxes = new Map<string, LocalSandbox>();
  #image: Promise<DefaultImage> | undefined;
  /** Image roots' top layers: the shared one, and those of images whose /etc is a symlink. */
  readonly #mountPointLayers: MountPointLayers;
  /** Where images' /etc leads, by their layers' stamp (a few recent ones). */
  readonly #etcs = new Map<string, Promise<ImageEtc>>();
  /** Ready-made disks of the default size, by what they start with. */
  readonly #diskTemplates = new Map<string, Promise<string>>();
  #prepared: Promise<void> | undefined;
  /** Serves its tunnels (made with the first). */
  #relay: TunnelRelay | undefined;
  readonly #warm: WarmPool<LocalSandbox>;
  readonly #imagePools: ImageWarmPools<LocalSandbox>;
  /** When the pools refill: once nothing has been asked of any sandbox for a while. */
  readonly #quiet = new QuietPeriod({ quietMs: 100, maxMs: 1000 });
  /** Its sandboxes standing on each image's layers (an image store keeps those). */
  readonly #imageUsers = new ImageUsers();
  /** What each image sandbox's layers were when it started (see layerStamp). */
  readonly #layerStamps = new WeakMap<LocalSandbox, { image: ImageRecord; stamp: string }>();
  #closed = false;
  /** Launches and adopts under way: close() waits for them (each fails, or is destroyed, once closed). */
  readonly #launching = new Set<Promise<unknown>>();
  #seccompFile: Promise<string> | undefined;
  #agentFile: Promise<string> | undefined;
  /** Sandboxes' network on this host, made once the range of ids is claimed, until close. */
  #network: Promise<HostNetwork> | undefined;

  constructor(options: LocalRuntimeOptions) {
    this.#options = options;
    networkPlan(options.network ?? {}, 0); // (bad settings fail here, before anything is made)
    this.#dir = join(options.dataDir, "runtime");
    // Cgroup names carry a tag of the data dir, so two servers on one machine never touch
    // each other's sandboxes (cleanup after a crash removes only this data dir's cgroups).
    this.#instance = createHash("sha256").update(resolve(this.#dir)).digest("hex").slice(0, 10);
    this.#layerIdBase = options.layers?.layerIdBase ?? DEFAULT_LAYER_ID_BASE;
    this.#defaultDiskMiB = options.defaultDiskMiB ?? 10_240;
    this.#mountPointLayers = new MountPointLayers(join(this.#dir, "images"), this.#layerIdBase);
    // Started under a warm id, then no longer the runtime's by id: the pool owns it.
    const warmStart = (spec: RuntimeSandboxSpec) =>
      this.#start(spec).then((sandbox) => {
        this.#sandboxes.delete(spec.id);
        return sandbox;
      });
    this.#warm = new WarmPool({
      size: options.warmPoolSize ?? 2,
      start: (id) => warmStart({ id, env: {}, network: WARM_NETWORK }),
    });
    this.#imagePools = new ImageWarmPools({
      size: options.warmPoolSize ?? 2,
      images: options.warmImages ?? 4,
      start: (id, image, user) =>
        warmStart({
          id,
          image,
          user,
          env: {},
          workdir: image.config.workingDir || undefined,
          network: WARM_NETWORK,
        }),
      intact: (sandbox) => {
        const started = this.#layerStamps.get(sandbox);
        const layers = this.#options.layers;
        return started !== undefined && layers !== undefined && layerStamp(started.image, layers) === started.stamp;
      },
    });
  }

  async checkPrerequisites(): Promise<string[]> {
    const problems = await localRuntimeProblems(this.#dir, this.#layerIdBase, () => this.#claimedRange());
    if (problems.length > 0) return problems;
    try {
      await this.#hostNetwork();
    } catch (error) {
      return [`sandboxes' network cannot be set up: ${(error as Error).message}`];
    }
    return [];
  }

  /**
   * Sandboxes' network: made once (the range of ids claimed first: the default range of
   * addresses is the range slot's, unique on this host), kept until close.
   */
  async #hostNetwork(): Promise<HostNetwork> {
    if (this.#closed) throw new Error("the runtime is closed");
    this.#network ??= forgetOnFailure(
      this.#claimedRange().then((range) => {
        const slot = Math.floor(Math.max(0, range.start - 2 ** 31) / (DEFAULT_SANDBOX_BLOCKS * ID_BLOCK));
        const plan = networkPlan(this.#options.network ?? {}, slot);
        // Only a default slot is this server's alone (an operator's range of ids can map to
        // another server's slot of addresses): only there are others' links a dead server's.
        const held = { ...plan, slotRange: plan.slotRange && this.#options.sandboxUids === undefined };
        return HostNetwork.start(this.#instance, held, {
          info: (message, fields) => this.#options.log?.(message, fields),
        });
      }),
      () => {
        this.#network = undefined;
      },
    );
    return this.#network;
  }

  /** Its range of host ids: claimed host-wide the first time (see id-range-claim.ts), held until close. */
  async #claimedRange(): Promise<UidRange> {
    if (this.#closed) throw new Error("the runtime is closed"); // (a claim made now would never be released)
    this.#claim ??= forgetOnFailure(this.#claimRange(), () => {
      this.#claim = undefined;
    });
    this.#range = (await this.#claim).range;
    return this.#range;
  }

  async #claimRange(): Promise<IdRangeClaim> {
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    this.#agentFile ??= forgetOnFailure(installAgent(this.#dir), () => {
      this.#agentFile = undefined;
    });
    const agent = await this.#agentFile;
    const given = this.#options.sandboxUids;
    const layers = { start: this.#layerIdBase, count: ID_BLOCK }; // (shared: no process runs as them)
    return given
      ? claimIdRange(agent, given, ID_CLAIMS_FILE, layers)
      : claimDefaultRange(agent, defaultRangeSlot(this.#instance), ID_CLAIMS_FILE, layers);
  }

  /**
   * Images of this host's platform whose layers are in the store, whose /etc (if a symlink)
   * leads to a directory within the image (see sandbox-root.ts, image-etc.ts).
   */
  async imageProblem(image: ImageRecord): Promise<string | undefined> {
    const layers = this.#options.layers;
    const problem = imageRootProblem(image, layers);
    if (problem || !layers) return problem;
    return imageEtcProblem(image, await this.#etcOf(image, layers));
  }

  /**
   * Where the image's /etc leads, read in its layers; kept for the few images used last, by
   * their layers' stamp (a layer unpacked again is read again). Refusals are kept too, so an
   * image that is refused costs its reading once; one for a read that failed (not the image's
   * doing, maybe) only for a little while.
   */
  #etcOf(image: ImageRecord, layers: LayerSource): Promise<ImageEtc> {
    const stamp = layerStamp(image, layers);
    const resolve = () => resolveImageEtc(imageLayerDirs(image, layers));
    if (stamp === undefined) return resolve();
    let etc = this.#etcs.get(stamp);
    if (etc)
      this.#etcs.delete(stamp); // (set again below: the most recent last)
    else {
      const resolving = resolve();
      const forget = () => {
        if (this.#etcs.get(stamp) === resolving) this.#etcs.delete(stamp);
      };
      void resolving.then((answer) => {
        if (answer.kind === "refused" && answer.transient) setTimeout(forget, ETC_READ_FAILURE_KEPT_MS).unref();
      }, forget); // (resolveImageEtc answers what it cannot read: never expected)
      etc = resolving;
    }
    this.#etcs.set(stamp, etc);
    while (this.#etcs.size > ETC_CACHE) this.#etcs.delete(this.#etcs.keys().next().value as string);
    return etc;
  }

  /**
   * Every network spec can be had: outbound policies are in force on each sandbox's link
   * (network/host-network.ts), and the server reaches into a sandbox over that link (`dial`),
   * for exposed ports and TCP probes, whatever its outbound policy.
   */
  networkProblem(_network: RuntimeNetworkSpec): string | undefined {
    return undefined;
  }

  /**
   * A TCP connection to `port` in a running sandbox (for the server's gateway: tunnels,
   * connect tokens, service URLs). Rejects when the sandbox is not this runtime's or has ended,
   * and with the socket's error (ECONNREFUSED) when nothing listens there.
   */
  async dial(sandboxId: string, port: number, signal?: AbortSignal): Promise<Socket> {
    const sandbox = this.#sandboxes.get(sandboxId);
    if (!sandbox) throw new Error(`sandbox ${sandboxId} is not running`);
    return await sandbox.dial(port, signal);
  }

  /**
   * A tunnel to `port` of a running sandbox, served by the tunnel relay (network/tunnel-relay.ts:
   * the agent binary's, started with the first tunnel) on `host`.
   */
  async openTunnel(sandboxId: string, port: number, host: string): Promise<RelayTunnel> {
    if (this.#closed) throw new Error("the runtime is closed");
    const sandbox = this.#sandboxes.get(sandboxId);
    if (!sandbox) throw new Error(`sandbox ${sandboxId} is not running`);
    return await sandbox.openTunnel(this.#tunnelRelay(), port, host);
  }

  /**
   * Hands a tunnel-route connection to `sandboxId` (upgraded and checked, nothing sent on it yet)
   * to the tunnel relay, whose Go data plane serves it from then on (agent/relay_mux.go).
   * False when it is not taken (the caller serves it): the sandbox is not this runtime's or not
   * running, or the relay did not take it (logged).
   */
  async handOffTunnel(sandboxId: string, socket: Socket): Promise<boolean> {
    const sandbox = this.#sandboxes.get(sandboxId);
    if (this.#closed || !sandbox) return false;
    try {
      await sandbox.adoptTunnel(this.#tunnelRelay(), socket);
      return true;
    } catch (error) {
      this.#options.log?.("the tunnel relay did not take a tunnel connection; it is served in this process", {
        sandboxId,
        why: (error as Error).message,
      });
      return socket.destroyed;
    }
  }

  #tunnelRelay(): TunnelRelay {
    this.#relay ??= new TunnelRelay({
      agent: () => {
        this.#agentFile ??= forgetOnFailure(installAgent(this.#dir), () => {
          this.#agentFile = undefined;
        });
        return this.#agentFile;
      },
      log: (message, fields, level) => this.#options.log?.(message, fields, level),
    });
    return this.#relay;
  }

  async closeTunnel(sandboxId: string, port: number): Promise<void> {
    await this.#relay?.close(sandboxId, port);
  }

  /**
   * Its warm sandboxes stand on the image's layers: they go before the image does, and so do
   * its sandboxes being destroyed (a terminated one's destroy may still be under way).
   */
  async releaseImage(imageId: string): Promise<void> {
    await this.#imagePools.release(imageId);
    await this.#imageUsers.departures(imageId);
  }

  /** Whether any of its sandboxes (starting, warm, live or being destroyed) stands on the image's layers. */
  imageInUse(imageId: string): boolean {
    return this.#imageUsers.inUse(imageId);
  }

  async createSandbox(spec: RuntimeSandboxSpec): Promise<RuntimeSandbox> {
    // (Its use of the image's layers begins before anything is awaited; an image whose /etc
    // cannot be had fails as its root is made, see #rootOf.)
    if (spec.image) {
      const problem = imageRootProblem(spec.image, this.#options.layers);
      if (problem) throw new Error(problem);
    }
    if (this.#closed) throw new Error("the runtime is closed");
    const limits = this.#limitsOf(spec);
    // A pre-started sandbox (of the default image, or of this image for this user) takes on
    // the new one's id, environment and limits; its disk was made with the default size, so a
    // sandbox asking for another starts cold.
    let warm: LocalSandbox | undefined;
    if (this.#diskOf(spec) === this.#defaultDiskMiB) {
      warm = spec.image ? this.#imagePools.take(spec.image, spec.user) : this.#warm.take();
    }
    // The pool is refilled once the sandbox is handed out and the runtime is quiet: a start in
    // the background would otherwise compete with this create, and with the first commands
    // the sandbox is given, for the CPU and the thread pool (see quiet-period.ts).
    this.#quiet.touch();
    const image = spec.image;
    const refill = () =>
      image
        ? this.#quiet.defer(`image:${image.id}\0${spec.user ?? ""}`, () => this.#imagePools.refill(image, spec.user))
        : this.#quiet.defer("default", () => this.#warm.refill());
    if (warm) {
      try {
        if (await this.#inFlight(this.#adopt(warm, spec, limits))) return warm;
      } finally {
        refill();
      }
    }
    try {
      return await this.#start(spec);
    } finally {
      refill();
    }
  }

  /** A warm sandbox takes on the spec: true once it is the runtime's, else destroyed (failed, or closed meanwhile). */
  async #adopt(
    warm: LocalSandbox,
    spec: RuntimeSandboxSpec,
    limits: Parameters<LocalSandbox["adopt"]>[1],
  ): Promise<boolean> {
    try {
      await warm.adopt(spec, limits);
      if (this.#closed) throw new Error("the runtime is closed");
      this.#sandboxes.set(spec.id, warm);
      return true;
    } catch {
      await warm.destroy();
      return false;
    }
  }

  /** `step`, a launch or an adopt, counted among those close() waits for until it settles. */
  async #inFlight<T>(step: Promise<T>): Promise<T> {
    this.#launching.add(step);
    try {
      return await step;
    } finally {
      this.#launching.delete(step);
    }
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
    // From now until it is destroyed, the sandbox stands on its image's layers.
    const use = spec.image ? this.#imageUsers.begin(spec.image.id) : undefined;
    try {
      return await this.#inFlight(this.#launch(spec, (done, gone) => use?.leave(done, gone)));
    } catch (error) {
      use?.leave(Promise.resolve()); // (nothing more when its destroy has already left)
      throw error;
    }
  }

  /** Makes and starts a sandbox; `onDestroying` hears when its destroy begins (see SandboxSetup). */
  async #launch(
    spec: RuntimeSandboxSpec,
    onDestroying: (done: Promise<void>, gone: Promise<void>) => void,
  ): Promise<LocalSandbox> {
    this.#prepared ??= forgetOnFailure(this.#prepare(), () => {
      this.#prepared = undefined;
    });
    await this.#prepared;
    const blocks = this.#blocks as IdBlockAllocator; // (made by #prepare)
    const version = detectCgroupVersion();
    if (!version) throw new Error("no usable cgroup hierarchy");
    const images = join(this.#dir, "images");
    this.#image ??= forgetOnFailure(ensureDefaultImage(images, this.#layerIdBase), () => {
      this.#image = undefined;
    });
    this.#seccompFile ??= forgetOnFailure(this.#writeSeccomp(), () => {
      this.#seccompFile = undefined;
    });
    this.#agentFile ??= forgetOnFailure(installAgent(this.#dir), () => {
      this.#agentFile = undefined;
    });
    // An image's layers as they are now: a warm sandbox is handed out only while they are unchanged
    // (none when a layer is missing now: never handed out).
    const stamp = spec.image && this.#options.layers ? layerStamp(spec.image, this.#options.layers) : undefined;
    // An image's mount-point layer is held from here: by the sandbox once it is made (let go of
    // once it is gone), else let go of here.
    const rooted = this.#rootOf(spec);
    let made = false;
    try {
      const [seccomp, agent, { root, mountPoints }, network] = await Promise.all([
        this.#seccompFile,
        this.#agentFile,
        rooted,
        this.#hostNetwork(),
      ]);
      const diskMiB = this.#diskOf(spec);
      let diskSource: DiskSource = { contents: root.diskContents };
      if (diskMiB === this.#defaultDiskMiB) {
        const contents = root.diskContents;
        let template = this.#diskTemplates.get(contents);
        if (!template) {
          template = forgetOnFailure(
            ensureDiskTemplate(join(contents, "..", diskTemplateName(diskMiB)), diskMiB, contents),
            () => this.#diskTemplates.delete(contents),
          );
          this.#diskTemplates.set(contents, template);
        }
        diskSource = { template: await template };
      }
      const limits = this.#limitsOf(spec);
      // Closed meanwhile: nothing more starts (close waits for this launch, then lets its range go).
      if (this.#closed) throw new Error("the runtime is closed");
      // Its own block of ids while it lives: freed by destroy, once nothing of the sandbox runs.
      const base = blocks.allocate();
      const sandbox = new LocalSandbox(spec, {
        dir: join(this.#dir, "sandboxes", spec.id),
        sandboxMounts: join(this.#dir, "sandboxes"),
        root,
        seccomp,
        agent,
        base,
        layerIdBase: this.#layerIdBase,
        releaseBlock: () => blocks.release(base),
        diskMiB,
        diskSource,
        cgroupVersion: version,
        cgroupPrefix: this.#instance,
        memoryMiB: limits.memoryLimitMiB,
        pidsLimit: limits.pidsLimit,
        agentCallTimeoutMs: this.#options.agentCallTimeoutMs ?? 60_000,
        sandboxNice: this.#options.sandboxNice,
        onActivity: () => this.#quiet.touch(),
        network,
        onDestroyed: (gone) => {
          if (this.#sandboxes.get(gone.id) === gone) this.#sandboxes.delete(gone.id);
        },
        onDestroying: (done, gone) => {
          onDestroying(done, gone);
          const release = () => mountPoints?.release();
          gone.then(release, release);
        },
      });
      made = true;
      this.#sandboxes.set(spec.id, sandbox);
      if (spec.image && stamp !== undefined) this.#layerStamps.set(sandbox, { image: spec.image, stamp });
      try {
        await sandbox.start();
      } catch (error) {
        await sandbox.destroy();
        this.#sandboxes.delete(spec.id);
        throw error;
      }
      return sandbox;
    } finally {
      if (!made)
        void rooted.then(
          ({ mountPoints }) => mountPoints?.release(),
          () => {},
        );
    }
  }

  /**
   * What the sandbox's root is made of: the default image, or its image's layers under its
   * mount-point layer (held: the caller lets go of it once the root is no longer used).
   */
  async #rootOf(spec: RuntimeSandboxSpec): Promise<{ root: RootRecipe; mountPoints?: MountPointLayer }> {
    const layers = this.#options.layers;
    if (!spec.image || !layers) return { root: defaultRoot(await (this.#image as Promise<DefaultImage>)) };
    const etc = await this.#etcOf(spec.image, layers);
    if (etc.kind === "refused") throw new Error(imageEtcProblem(spec.image, etc));
    const [parts, mountPoints] = await Promise.all([this.#mountPointLayers.parts(), this.#mountPointLayers.hold(etc)]);
    return { root: imageRoot(spec.image, layers, mountPoints, parts.emptyLayer), mountPoints };
  }

  /**
   * Claims its range of ids; makes its dirs, root's alone: no host account (nor any sandbox
   * uid) reaches a sandbox's layers by path.
   */
  async #prepare(): Promise<void> {
    if (!this.#blocks) {
      const range = await this.#claimedRange();
      // A block some process still runs as (left by an earlier holder of the range) is never
      // handed out: a sandbox there would share its ids.
      const busy = await busyIdBlocks(range);
      this.#blocks ??= new IdBlockAllocator(range, busy);
    }
    await mkdir(join(this.#dir, "sandboxes"), { recursive: true, mode: 0o700 });
    await chmod(this.#dir, 0o700);
    await chmod(join(this.#dir, "sandboxes"), 0o700);
    await mountSandboxesDir(join(this.#dir, "sandboxes"));
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
    // Then what earlier runs built for their sandboxes' roots and no sandbox uses any more:
    // other versions of the default image and of image roots' parts, builds cut short, layers
    // of images whose /etc is a symlink (see mount-point-layers.ts, stale-entries.ts).
    if (emptied) {
      const images = join(this.#dir, "images");
      const current = defaultImageName(this.#layerIdBase);
      try {
        const removed = [
          ...(await removeStaleEntries(images, staleVersionOf("default", current))),
          ...(await removeStaleEntries(join(images, current), staleStaging)).map((name) => join(current, name)),
          ...(await this.#mountPointLayers.sweep()),
        ];
        if (removed.length > 0) this.#options.log?.("removed stale image parts", { dir: images, removed });
      } catch (error) {
        this.#options.log?.("could not remove stale image parts", { dir: images, error: String(error) });
      }
    }
    this.#warm.refill();
  }

  /** The range of host ids it claimed (undefined until it has); for diagnostics and tests. */
  get sandboxIdRange(): UidRange | undefined {
    return this.#range;
  }

  /** How many sandboxes it holds (not yet destroyed); for diagnostics and tests. */
  get sandboxCount(): number {
    return this.#sandboxes.size;
  }

  /** Started sandboxes waiting in the warm pools: the default image's, and each image's (by id); for diagnostics and tests. */
  get warmSandboxes(): { readonly default: number; readonly images: ReadonlyMap<string, number> } {
    return { default: this.#warm.ready, images: this.#imagePools.ready };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#quiet.close();
    const warm = [...(await this.#warm.close()), ...(await this.#imagePools.close())];
    // Launches under way end (failed, or with their sandbox among #sandboxes) before its ids go.
    await Promise.allSettled([...this.#launching]);
    const all = [...this.#sandboxes.values(), ...warm];
    await Promise.all(all.map((s) => s.destroy()));
    this.#sandboxes.clear();
    if (this.#prepared) await unmountSandboxesDir(join(this.#dir, "sandboxes")).catch(() => {});
    // Its table, anchor and DNS go once no sandbox has a link.
    const network = this.#network;
    this.#network = undefined;
    await (await network?.catch(() => undefined))?.close();
    this.#relay?.stop();
    // Its ids go back to the host once nothing of its sandboxes runs.
    const claim = this.#claim;
    this.#claim = undefined;
    (await claim?.catch(() => undefined))?.release();
  }
}

/** A cached one-time step whose failure is not kept: the next caller tries again. */
function forgetOnFailure<T>(step: Promise<T>, forget: () => void): Promise<T> {
  step.catch(forget);
  return step;
}
