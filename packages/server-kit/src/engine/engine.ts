/**
 * The engine: every sandbox and process of one server (or one fake), their lifecycle,
 * retained output and persistence, behind two seams — the runtime driver that runs
 * sandboxes and the store that remembers them. The RPC handlers (`*-service.ts`) call into
 * it. Browser-safe: nothing here imports a `node:` module.
 */
import { create } from "@bufbuild/protobuf";
import { type ProcessSpec, SandboxSchema, type SandboxSpec, SandboxState } from "@sbx/proto";
import { Uploads } from "../uploads.js";
import { DEFAULT_IMAGE } from "./default-image.js";
import { EngineImages } from "./engine-images.js";
import { type EngineLogger, silentLogger } from "./engine-logger.js";
import { ENTRYPOINT, EngineSandbox, type SandboxHost } from "./engine-sandbox.js";
import { exited, signaled, terminated } from "./exit-status.js";
import type { ImageRecord, ImageStore } from "./image-store.js";
import type { SandboxIngress } from "./ingress.js";
import type { OutputStorage } from "./output-storage.js";
import type { SandboxRuntime } from "./runtime-driver.js";
import type { StateStore } from "./state-store.js";
import { type Timer, unrefTimer } from "./timers.js";

/** How long a write a restart needs only eventually may wait (see `saveStateSoon`). */
export const DEFERRED_WRITE_MS = 250;

export interface EngineOptions {
  /** Bytes of output kept per process stream (older output is dropped); default 64 MiB. */
  readonly outputRetentionBytes?: number | undefined;
  /** Most sandboxes running at once; more → RESOURCE_EXHAUSTED. Default 1000. */
  readonly maxRunningSandboxes?: number | undefined;
  /**
   * Why no sandbox may be created now (say, the host's disk is below its reserve), if so:
   * a create then fails with RESOURCE_EXHAUSTED and this sentence.
   */
  readonly capacityProblem?: (() => Promise<string | undefined>) | undefined;
  readonly logger?: EngineLogger | undefined;
}

export interface EngineSeams {
  readonly runtime: SandboxRuntime;
  readonly store: StateStore;
  readonly outputs: OutputStorage;
  /**
   * Where images other than the driver's default come from (registry pulls, imports). Absent:
   * only the default image exists, and pulls and imports are refused with UNIMPLEMENTED.
   */
  readonly images?: ImageStore | undefined;
  /**
   * How clients reach sandboxes' ports (tunnels, the token gateway). Absent: those calls are
   * refused with UNIMPLEMENTED.
   */
  readonly ingress?: SandboxIngress | undefined;
}

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

export function newSandboxId(): string {
  const bytes = new Uint8Array(20);
  crypto.getRandomValues(bytes);
  let id = "sb-";
  for (const b of bytes) id += ALPHABET[b % ALPHABET.length];
  return id;
}

export class Engine implements SandboxHost {
  readonly sandboxes = new Map<string, EngineSandbox>();
  readonly byRequestId = new Map<string, EngineSandbox>();
  /** Creates in flight by request id, so a retry joins the first. */
  readonly creating = new Map<string, Promise<EngineSandbox>>();
  /** File uploads in progress (WriteFile chunks and raw PUTs alike). */
  readonly uploads = new Uploads();
  readonly runtime: SandboxRuntime;
  readonly store: StateStore;
  readonly outputs: OutputStorage;
  /** The default image and the image store's, if any. */
  readonly images: EngineImages;
  readonly ingress: SandboxIngress | undefined;
  readonly logger: EngineLogger;
  #sequence = 0;
  readonly #pending = new Set<Promise<unknown>>();
  /** Writes waiting for `#flushDeferred`, by what they are about (see `saveStateSoon`). */
  readonly #deferred = new Map<object, (store: StateStore) => void>();
  #deferredTimer: Timer | undefined;

  constructor(
    seams: EngineSeams,
    readonly options: EngineOptions = {},
  ) {
    this.runtime = seams.runtime;
    this.store = seams.store;
    this.outputs = seams.outputs;
    this.images = new EngineImages(seams.runtime.defaultImage ?? DEFAULT_IMAGE, seams.images);
    this.ingress = seams.ingress;
    this.logger = options.logger ?? silentLogger;
  }

  get maxRunningSandboxes(): number {
    return this.options.maxRunningSandboxes ?? 1000;
  }

  /** Loads every recorded sandbox; those that were running when the engine stopped are marked terminated. */
  async restore(): Promise<void> {
    const { sandboxes, processes } = this.store.load();
    for (const record of sandboxes) {
      const sandbox = new EngineSandbox(this, record.sandbox, record.requestId, record.sequence);
      this.sandboxes.set(sandbox.info.id, sandbox);
      if (record.requestId) this.byRequestId.set(record.requestId, sandbox);
      this.#sequence = Math.max(this.#sequence, record.sequence + 1);
    }
    for (const info of processes) {
      const sandbox = this.sandboxes.get(info.sandboxId);
      if (!sandbox) continue;
      const wasRunning = info.running;
      info.running = false;
      if (wasRunning) info.exitStatus = info.processId === ENTRYPOINT ? terminated() : signaled(9);
      if (wasRunning && info.processId !== ENTRYPOINT) {
        info.sandboxEnded = true;
        info.sandboxExitStatus = terminated();
      }
      sandbox.addProcess(info.processId, info.spec as ProcessSpec, info);
      if (wasRunning) this.saveState((store) => store.saveProcess(info));
    }
    for (const sandbox of this.sandboxes.values()) {
      if (sandbox.info.state !== SandboxState.FINISHED) {
        sandbox.info.state = SandboxState.FINISHED;
        sandbox.info.exitStatus = terminated();
        sandbox.info.finishedAtMs = BigInt(Date.now());
        this.persistSandbox(sandbox);
        this.logger.info("sandbox was running when the server stopped; marked terminated", { id: sandbox.info.id });
      }
    }
    await this.runtime.cleanupLeftovers();
  }

  /**
   * Records a new sandbox and starts it from `image` (the spec already checked, its image
   * resolved; default: the default image).
   */
  async create(
    requestId: string,
    spec: SandboxSpec,
    image: ImageRecord = this.images.defaultImage,
  ): Promise<EngineSandbox> {
    const info = create(SandboxSchema, {
      id: newSandboxId(),
      spec,
      state: SandboxState.RUNNING,
      createdAtMs: BigInt(Date.now()),
      entrypointProcessId: ENTRYPOINT,
      imageId: image.id,
    });
    const sandbox = new EngineSandbox(this, info, requestId, this.#sequence++, image);
    this.sandboxes.set(info.id, sandbox);
    if (requestId) this.byRequestId.set(requestId, sandbox);
    this.persistSandbox(sandbox);
    try {
      await sandbox.start();
    } catch (error) {
      this.logger.error("sandbox failed to start", { id: info.id, error: String(error) });
      sandbox.finish(exited(127));
      throw error;
    }
    return sandbox;
  }

  /**
   * A sandbox that still uses image `imageId` (one that has not finished), if there is one: an
   * image store must keep such an image. (Sandboxes restored after a restart have finished.)
   */
  sandboxUsingImage(imageId: string): string | undefined {
    for (const sandbox of this.sandboxes.values()) {
      if (sandbox.running && sandbox.info.imageId === imageId) return sandbox.info.id;
    }
    return undefined;
  }

  persistSandbox(sandbox: EngineSandbox): void {
    this.saveState((store) =>
      store.saveSandbox({ sandbox: sandbox.info, requestId: sandbox.requestId, sequence: sandbox.sequence }),
    );
  }

  /**
   * Runs a store write without letting its failure (a full disk) escape into timers and
   * exit handlers, where it would end the server: the in-memory state stays authoritative
   * while the engine runs; only what a restart would see is stale.
   */
  saveState(write: (store: StateStore) => void, about?: object): void {
    // This write carries the record as it is now: one still deferred for it has nothing to add.
    if (about !== undefined) this.#deferred.delete(about);
    try {
      write(this.store);
    } catch (error) {
      this.logger.error("saving state failed", { error: error instanceof Error ? error.message : String(error) });
    }
  }

  /**
   * A write that a restart needs only eventually (a started process's pid), kept off the
   * request that caused it: done within DEFERRED_WRITE_MS, or not at all when a `saveState`
   * about the same record comes first (a process that ends sooner is written once, at its end:
   * for `exec` → `wait`, two writes instead of three). Shutdown does what is still waiting.
   */
  saveStateSoon(about: object, write: (store: StateStore) => void): void {
    this.#deferred.set(about, write);
    this.#deferredTimer ??= unrefTimer(() => this.#flushDeferred(), DEFERRED_WRITE_MS);
  }

  #flushDeferred(): void {
    clearTimeout(this.#deferredTimer);
    this.#deferredTimer = undefined;
    const writes = [...this.#deferred.values()];
    this.#deferred.clear();
    for (const write of writes) this.saveState(write);
  }

  /** Keeps `work` (a sandbox being destroyed) for `shutdown` to wait on. */
  track(work: Promise<unknown>): void {
    this.#pending.add(work);
    void work.finally(() => this.#pending.delete(work));
  }

  /** Terminates every running sandbox and waits until their resources are released. */
  async shutdown(): Promise<void> {
    for (const sandbox of this.sandboxes.values()) sandbox.finish(terminated());
    await Promise.allSettled([...this.#pending]);
    await this.runtime.close();
    this.#flushDeferred();
    this.store.close();
  }
}
