/**
 * One sandbox as the engine sees it: its record, its processes (the entrypoint among them),
 * its timeout and idle timeout, and its end, which ends every process and releases what the
 * runtime driver holds for it.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type ExitStatus,
  type Process,
  type ProcessSpec,
  ProcessSpecSchema,
  type Sandbox,
  type SandboxSpec,
  SandboxState,
  StdioMode,
} from "@sbx/proto";
import { Notifier } from "../notifier.js";
import type { EngineLogger } from "./engine-logger.js";
import { EngineProcess } from "./engine-process.js";
import { exited, idleTimedOut, signaled, timedOut } from "./exit-status.js";
import type { ImageRecord } from "./image-store.js";
import type { SandboxIngress } from "./ingress.js";
import { networkSpecOf } from "./network-spec.js";
import type { OutputStorage } from "./output-storage.js";
import { Readiness } from "./readiness.js";
import type { RuntimeNetworkPolicy, RuntimeSandbox, SandboxRuntime } from "./runtime-driver.js";
import type { StateStore } from "./state-store.js";
import { type Timer, unrefTimer } from "./timers.js";

/** The process id of a sandbox's own command. */
export const ENTRYPOINT = "entrypoint";

/** What a sandbox needs from the engine that holds it. */
export interface SandboxHost {
  readonly runtime: SandboxRuntime;
  readonly outputs: OutputStorage;
  readonly logger: EngineLogger;
  readonly options: { readonly outputRetentionBytes?: number | undefined };
  readonly images: { isDefault(image: ImageRecord): boolean };
  readonly ingress?: SandboxIngress | undefined;
  persistSandbox(sandbox: EngineSandbox): void;
  /** Runs a store write; its failure is logged, never thrown. `about`: the record it writes. */
  saveState(write: (store: StateStore) => void, about?: object): void;
  /** Runs a store write soon, unless a `saveState` about the same record comes first. */
  saveStateSoon(about: object, write: (store: StateStore) => void): void;
  /** Keeps `work` for shutdown to wait on. */
  track(work: Promise<unknown>): void;
}

export class EngineSandbox {
  readonly processes = new Map<string, EngineProcess>();
  readonly ended = new Notifier();
  readonly readiness: Readiness;
  runtime: RuntimeSandbox | undefined;
  #timers: Timer[] = [];
  /** Policy updates run one at a time, in the order they came. */
  #networkUpdate: Promise<void> = Promise.resolve();
  #idleTimer: Timer | undefined;

  constructor(
    readonly engine: SandboxHost,
    readonly info: Sandbox,
    readonly requestId: string,
    readonly sequence: number,
    /** The image it starts from (undefined for one restored from the store: it never starts again). */
    readonly image?: ImageRecord | undefined,
  ) {
    this.readiness = new Readiness(info.spec?.readinessProbe);
  }

  get running(): boolean {
    return this.info.state !== SandboxState.FINISHED;
  }

  get spec(): SandboxSpec {
    return this.info.spec as SandboxSpec;
  }

  async start(): Promise<void> {
    const spec = this.spec;
    const image = this.image;
    // The default image is the driver's own: it gets none (and needs no store's layers).
    const fromStore = image && !this.engine.images.isDefault(image) ? image : undefined;
    this.runtime = await this.engine.runtime.createSandbox({
      id: this.info.id,
      image: fromStore,
      user: fromStore?.config.user || undefined,
      env: spec.env,
      workdir: spec.workdir || fromStore?.config.workingDir || undefined,
      cpuLimit: spec.cpu?.cores?.limit || undefined,
      memoryLimitMiB: spec.memory?.mib?.limit || undefined,
      network: networkSpecOf(spec),
      diskMiB: spec.diskMib || undefined,
    });
    if (!this.running) {
      // Terminated while its runtime was being made: release it at once (shutdown waits).
      const id = this.info.id;
      this.engine.track(
        this.runtime
          .destroy()
          .catch((error) => this.engine.logger.error("destroying sandbox failed", { id, error: String(error) })),
      );
      return;
    }
    void this.runtime.died.then(() => this.finish(signaled(9)));
    this.readiness.start(this.runtime);
    this.#timers.push(unrefTimer(() => this.finish(timedOut()), Number(spec.timeoutMs)));
    const entry = this.addProcess(
      ENTRYPOINT,
      create(ProcessSpecSchema, {
        argv: [...spec.command],
        workdir: spec.workdir,
        pty: spec.pty,
        stdout: StdioMode.PIPE,
        stderr: StdioMode.PIPE,
      }),
      undefined,
      { startsNow: spec.command.length > 0 },
    );
    this.touch();
    // No command: the sandbox just stays up; its entrypoint is a record that ends with it.
    if (spec.command.length > 0) await entry.start(this.runtime);
  }

  /**
   * Replaces the sandbox's outbound policy (checked already): the driver puts it in force,
   * then the record keeps it. Without the driver's `updateNetwork`, UNIMPLEMENTED.
   */
  updateNetwork(policy: RuntimeNetworkPolicy): Promise<void> {
    const run = async () => {
      const runtime = this.runtime;
      if (!this.running || !runtime) {
        throw new ConnectError(`sandbox ${this.info.id} has finished`, Code.FailedPrecondition);
      }
      if (!runtime.updateNetwork) {
        throw new ConnectError(
          `changing a running sandbox's network is not supported by the ${this.engine.runtime.name} runtime yet`,
          Code.Unimplemented,
        );
      }
      const problem = this.engine.runtime.networkProblem?.({ ...networkSpecOf(this.spec), ...policy });
      if (problem) throw new ConnectError(problem, Code.Unimplemented);
      await runtime.updateNetwork(policy);
      this.spec.blockNetwork = policy.blockNetwork;
      this.spec.cidrAllowlist = [...policy.cidrAllowlist];
      this.engine.persistSandbox(this);
    };
    const next = this.#networkUpdate.then(run, run);
    this.#networkUpdate = next.catch(() => {});
    return next;
  }

  /**
   * Adds a process record, written at once unless the caller `startsNow` (`start` writes it as
   * soon as the runtime has the request: the write overlaps the start instead of delaying it).
   */
  addProcess(
    processId: string,
    spec: ProcessSpec,
    restored?: Process,
    options: { readonly startsNow?: boolean } = {},
  ): EngineProcess {
    const process = restored ? new EngineProcess(this, restored, true) : EngineProcess.create(this, processId, spec);
    this.processes.set(processId, process);
    if (!restored && !options.startsNow) this.persistProcess(process);
    return process;
  }

  /** RPCs and process activity postpone the idle timeout. */
  touch(): void {
    const idleMs = Number(this.spec.idleTimeoutMs);
    if (idleMs <= 0 || !this.running) return;
    clearTimeout(this.#idleTimer);
    this.#idleTimer = unrefTimer(() => {
      const busy = [...this.processes.values()].some((p) => p.info.processId !== ENTRYPOINT && p.running);
      if (busy) this.touch();
      else this.finish(idleTimedOut());
    }, idleMs);
  }

  processEnded(process: EngineProcess): void {
    if (process.info.processId === ENTRYPOINT && this.running) {
      this.finish(process.info.exitStatus ?? exited(0));
    }
    this.touch();
  }

  /** Ends the sandbox once: its processes are killed and its runtime resources released. */
  finish(status: ExitStatus): void {
    if (!this.running) return;
    this.info.state = SandboxState.FINISHED;
    this.info.exitStatus = status;
    this.info.finishedAtMs = BigInt(Date.now());
    for (const t of this.#timers) clearTimeout(t);
    clearTimeout(this.#idleTimer);
    for (const p of this.processes.values()) {
      if (p.info.processId !== ENTRYPOINT && p.running) {
        p.info.sandboxEnded = true;
        p.info.sandboxExitStatus = status;
      }
      p.finish(p.info.processId === ENTRYPOINT ? status : signaled(9));
    }
    this.engine.persistSandbox(this);
    this.readiness.stop();
    this.engine.ingress?.sandboxEnded(this.info.id);
    this.ended.notify();
    const runtime = this.runtime;
    if (!runtime) return;
    this.engine.track(
      runtime
        .destroy()
        .catch((error) =>
          this.engine.logger.error("destroying sandbox failed", { id: this.info.id, error: String(error) }),
        ),
    );
  }

  persistProcess(process: EngineProcess): void {
    if (this.processes.get(process.info.processId) !== process) return;
    process.recorded = true;
    this.engine.saveState((store) => store.saveProcess(process.info), process);
  }

  /** Records what only a restart needs to know of `process`, soon (see `Engine.saveStateSoon`). */
  persistProcessSoon(process: EngineProcess): void {
    this.engine.saveStateSoon(process, (store) => {
      if (this.processes.get(process.info.processId) === process) store.saveProcess(process.info);
    });
  }

  /** Forgets a finished process: record, output and row (its TTL ran out). */
  forgetProcess(process: EngineProcess): void {
    if (this.processes.get(process.info.processId) !== process || process.running) return;
    this.processes.delete(process.info.processId);
    this.engine.saveState((store) => store.deleteProcess(this.info.id, process.info.processId), process);
    process.removeOutput();
  }
}
