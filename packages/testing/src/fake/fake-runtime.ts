/**
 * The fake runtime driver: sandboxes in memory. Each has its own in-memory filesystem, which
 * its processes' mini shell shares; a process runs the latest matching `onExec` handler, else
 * the mini shell (unless turned off), else fails like a missing command (127). It never
 * touches the host: browser-safe, no node: imports.
 */
import {
  type ImageRecord,
  processEnv,
  type RuntimeFilesystem,
  type RuntimeNetworkPolicy,
  type RuntimeProcess,
  type RuntimeProcessSpec,
  type RuntimeSandbox,
  type RuntimeSandboxSpec,
  type SandboxRuntime,
} from "@sbx/server-kit";
import { fakeRuntimeFiles } from "./fake-files.js";
import type { FakeImageStore } from "./fake-images.js";
import { FakeRuntimeProcess } from "./fake-process.js";
import { FakeTree } from "./fake-tree.js";
import { FakeFsError } from "./fs-errors.js";
import { commandOf, type ExecContext, type HandlerRegistry } from "./handlers.js";
import { miniShell } from "./mini-shell.js";
import type { PortRegistry } from "./ports.js";

export interface FakeRuntimeOptions {
  readonly handlers: HandlerRegistry;
  /** The mini shell for commands no handler matches. */
  readonly defaultHandlers: boolean;
  /** Where images' files are (the fake's image store). */
  readonly images: FakeImageStore;
  /** What answers on sandboxes' ports (`fake.onPort`). */
  readonly ports: PortRegistry;
}

export class FakeRuntime implements SandboxRuntime {
  readonly name = "fake";
  readonly #sandboxes = new Set<FakeRuntimeSandbox>();
  #pid = 100;

  constructor(readonly options: FakeRuntimeOptions) {}

  nextPid = (): number => this.#pid++;

  async checkPrerequisites(): Promise<string[]> {
    return [];
  }

  /** The fake starts any Linux image (it runs nothing of it: its processes are handlers). */
  imageProblem(image: ImageRecord): string | undefined {
    return image.platform.os === "linux"
      ? undefined
      : `image ${image.id} is for ${image.platform.os}: sandboxes run Linux images only`;
  }

  async createSandbox(spec: RuntimeSandboxSpec): Promise<RuntimeSandbox> {
    const sandbox = new FakeRuntimeSandbox(this, spec, () => this.#sandboxes.delete(sandbox));
    this.#sandboxes.add(sandbox);
    return sandbox;
  }

  async cleanupLeftovers(): Promise<void> {}

  async close(): Promise<void> {
    await Promise.all([...this.#sandboxes].map((s) => s.destroy()));
  }
}

class FakeRuntimeSandbox implements RuntimeSandbox {
  readonly id: string;
  /** The sandbox's files, shared by the filesystem calls and the mini shell. */
  readonly files: FakeTree;
  readonly fs: RuntimeFilesystem;
  readonly died = new Promise<void>(() => {}); // nothing kills a fake sandbox but destroy
  readonly #processes = new Set<FakeRuntimeProcess>();
  #destroyed = false;
  /** The outbound policy, kept as data: the fake sends no packets. */
  network: RuntimeNetworkPolicy;

  constructor(
    readonly runtime: FakeRuntime,
    readonly spec: RuntimeSandboxSpec,
    readonly forget: () => void,
  ) {
    this.id = spec.id;
    this.network = { blockNetwork: spec.network.blockNetwork, cidrAllowlist: spec.network.cidrAllowlist };
    // The fake has no default disk limit (the server's driver has one).
    this.files = new FakeTree({
      capacityBytes: spec.diskMiB ? spec.diskMiB * 1024 * 1024 : undefined,
      image: spec.image ? runtime.options.images.filesOf(spec.image.id) : undefined,
    });
    // The image's WorkingDir is made if the image lacks it, as Docker does.
    const workingDir = spec.image?.config.workingDir;
    if (workingDir) this.files.makeParents(workingDir);
    this.fs = fakeRuntimeFiles(this.files);
  }

  async exec(spec: RuntimeProcessSpec): Promise<RuntimeProcess> {
    if (this.#destroyed) throw new Error(`sandbox ${this.id} has been destroyed`);
    const workdir = spec.workdir ?? this.spec.workdir ?? "/";
    const process = new FakeRuntimeProcess({
      pid: this.runtime.nextPid(),
      spec,
      env: processEnv(spec.pty, this.spec.env, spec.env, this.spec.image),
      user: this.spec.user ?? "root",
      workdir,
      sandboxId: this.id,
      processId: spec.processId ?? "",
    });
    this.#processes.add(process);
    void process.exit.then(() => this.#processes.delete(process));
    const problem = this.#workdirProblem(workdir);
    if (problem) {
      // As the agent's child reports a failed chdir before exec.
      process.writeErr(`sbx: cannot change to directory ${workdir}: ${problem.strerror}\n`);
      process.end({ kind: "exited", code: problem.code === "ENOENT" ? 127 : 126 });
      return process;
    }
    const { handlers, defaultHandlers } = this.runtime.options;
    const found = handlers.find(spec.argv);
    const files = this.files;
    const handler = found?.handler ?? (defaultHandlers ? (ctx: ExecContext) => miniShell(ctx, files) : undefined);
    if (!handler) {
      process.writeErr(`fake: no handler for command: ${commandOf(spec.argv)}\n`);
      process.end({ kind: "exited", code: 127 });
      return process;
    }
    process.run(handler, found?.match ?? null);
    return process;
  }

  async updateNetwork(policy: RuntimeNetworkPolicy): Promise<void> {
    if (this.#destroyed) throw new Error(`sandbox ${this.id} has been destroyed`);
    this.network = { blockNetwork: policy.blockNetwork, cidrAllowlist: [...policy.cidrAllowlist] };
  }

  /** A port "listens" while `fake.onPort` has a handler for it. */
  async probeTcp(port: number): Promise<boolean> {
    return !this.#destroyed && this.runtime.options.ports.find(port) !== undefined;
  }

  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const process of this.#processes) process.end({ kind: "signaled", signal: 9 });
    this.files.close();
    this.forget();
  }

  #workdirProblem(workdir: string): FakeFsError | undefined {
    try {
      if (this.files.statFollowing(workdir).type !== "directory") return new FakeFsError("ENOTDIR", workdir);
      return undefined;
    } catch (error) {
      if (error instanceof FakeFsError) return error;
      throw error;
    }
  }
}
