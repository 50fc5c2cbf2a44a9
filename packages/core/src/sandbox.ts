/**
 * `Sandbox`: one sandbox as the Promise API shows it (modelled on Modal's `Sandbox`).
 */

import type { Sandbox as SandboxInfo } from "@sbx/proto";
import { StdioMode } from "@sbx/proto/wire";
import type { CommandHandle, ReconnectOptions, RunOptions } from "./command-handle.js";
import type { ExecutionResult } from "./command-ops.js";
import { ContainerProcess, type SignalOptions, type WaitOptions } from "./container-process.js";
import type { EffectRunner } from "./effect-runner.js";
import { ClientClosedError, FailedPreconditionError, SandboxTerminatedError, UnsupportedError } from "./errors.js";
import type { OpenBinaryMode, OpenMode, OpenTextMode, SandboxFile } from "./file-handle.js";
import {
  type FileCallOptions,
  type FilesystemFactory,
  type LocalSandboxFilesystem,
  SandboxFilesystem,
} from "./filesystem.js";
import { loadOnFirstUse } from "./load-on-first-use.js";
import type { ListenLocal, LocalTunnel } from "./local-tunnel.js";
import {
  type ConnectCredentials,
  type ConnectTokenOptions,
  connectPort,
  createConnectToken,
  createServiceToken,
  getTunnels,
  openPortSession,
  type Tunnel,
  validatePort,
} from "./network-ops.js";
import type { PortConnection } from "./port-dialer.js";
import { type ExecOptions, startProcess } from "./process-ops.js";
import { knownReturncode, returncodeOf, sandboxTimeoutError } from "./returncode.js";
import {
  getSandbox,
  isFinished,
  setSandboxTags,
  terminateSandbox,
  type UpdateSandboxOptions,
  updateSandbox,
  waitSandbox,
  waitUntilReady,
} from "./sandbox-ops.js";
import { type ServiceOptions, ServiceUrl } from "./service-url.js";
import type { StreamWriter } from "./stdin-writer.js";
import type { StreamReader } from "./stream-reader.js";
import { validateDuration } from "./validation.js";

export interface SandboxWaitOptions extends WaitOptions {
  /** When false, a timed-out or terminated sandbox resolves 124 / 137 instead of throwing. Default true. */
  readonly raiseOnTermination?: boolean;
}

export interface TerminateOptions extends SignalOptions {
  /** Also wait for the sandbox to finish and resolve its return code (137). */
  readonly wait?: boolean;
}

/**
 * A sandbox as runtimes with local files (Node, Deno, Bun) type it: its `filesystem` also
 * copies to and from local paths. Their packages export it as `Sandbox`.
 */
export type LocalSandbox = Sandbox & { readonly filesystem: LocalSandboxFilesystem };

/** What a runtime adapter adds to each sandbox. */
export interface SandboxExtras {
  /** `sb.filesystem` with local files (copyFromLocal / copyToLocal). */
  readonly filesystem?: FilesystemFactory;
  /** `sb.tunnel`'s local TCP listener. */
  readonly listenLocal?: ListenLocal;
  /** The runtime, as errors name it. */
  readonly runtimeName?: string;
}

export interface TunnelOptions {
  /** The local port to listen on, on 127.0.0.1; 0 (default): any free port. */
  readonly localPort?: number;
}

/** `sb.tunnel`'s code, loaded on first use. */
const localTunnels = () => loadOnFirstUse(() => import("./local-tunnel.js"));

/** Commands and their handles (`run`, `reconnect`), loaded on first use (see load-on-first-use.ts). */
const commandHandles = () => loadOnFirstUse(() => import("./command-handle.js"));

export class Sandbox implements AsyncDisposable {
  readonly id: string;
  readonly #runner: EffectRunner;
  #info: SandboxInfo;
  #detached = false;
  #entrypoint: ContainerProcess<string> | undefined;
  #filesystem: SandboxFilesystem | undefined;
  readonly #extras: SandboxExtras;

  /** @internal `extras`: what the adapter adds (local files for `sb.filesystem`, `sb.tunnel`'s listener). */
  constructor(runner: EffectRunner, info: SandboxInfo, extras: SandboxExtras = {}) {
    this.#runner = runner;
    this.#info = info;
    this.id = info.id;
    this.#extras = extras;
  }

  /** The sandbox's name, if it was given one. */
  get name(): string | undefined {
    return this.#info.spec?.name || undefined;
  }

  get app(): string {
    return this.#info.spec?.app || "default";
  }

  /** The id of the image it was started from ("im-default" for the server's default image). */
  get imageId(): string | undefined {
    return this.#info.imageId || undefined;
  }

  /** The return code once the sandbox has finished (124 timeout, 137 terminated); null while running. */
  get returncode(): number | null {
    return isFinished(this.#info) ? returncodeOf(this.#info.exitStatus) : null;
  }

  /** The entrypoint's stdout. */
  get stdout(): StreamReader<string> {
    return this.#entrypointProcess().stdout;
  }

  get stderr(): StreamReader<string> {
    return this.#entrypointProcess().stderr;
  }

  get stdin(): StreamWriter {
    return this.#entrypointProcess().stdin;
  }

  /** Waits for the sandbox to finish and resolves its return code. */
  async wait(options: SandboxWaitOptions = {}): Promise<number> {
    const runner = this.#live();
    const timeoutMs = options.timeoutMs === undefined ? undefined : validateDuration(options.timeoutMs, "timeoutMs");
    this.#info = await runner.run(waitSandbox(this.id, timeoutMs), options.signal);
    return this.#finishedCode(options.raiseOnTermination ?? true);
  }

  /** The return code if finished, else null (does not wait). */
  async poll(options: SignalOptions = {}): Promise<number | null> {
    const runner = this.#live();
    if (!isFinished(this.#info)) this.#info = await runner.run(getSandbox(this.id), options.signal);
    return this.returncode;
  }

  /** Terminates the sandbox and everything in it; a no-op if it already finished. */
  async terminate(options: TerminateOptions = {}): Promise<number | undefined> {
    const runner = this.#live();
    this.#info = await runner.run(terminateSandbox(this.id), options.signal);
    if (!options.wait) return undefined;
    return this.wait({ raiseOnTermination: false, ...(options.signal ? { signal: options.signal } : {}) });
  }

  async setTags(tags: Record<string, string>, options: SignalOptions = {}): Promise<void> {
    this.#info = await this.#live().run(setSandboxTags(this.id, tags), options.signal);
  }

  async getTags(options: SignalOptions = {}): Promise<Record<string, string>> {
    this.#info = await this.#live().run(getSandbox(this.id), options.signal);
    return { ...(this.#info.spec?.tags ?? {}) };
  }

  /**
   * Runs a command (an argv, no shell) in the sandbox. Its streams yield strings, or
   * `Uint8Array`s with `mode: "binary"`. Throws `SandboxTerminatedError` (or
   * `SandboxTimeoutError`) if the sandbox has ended.
   */
  // Overloads rather than a generic options type: a type parameter inferred from the object
  // literal would accept unknown keys (`{ mode: "binary", cwd: "/" }`) without a complaint.
  exec(
    command: string[],
    options: ExecOptions & SignalOptions & { readonly mode: "binary" },
  ): Promise<ContainerProcess<Uint8Array>>;
  exec(
    command: string[],
    options?: ExecOptions & SignalOptions & { readonly mode?: "text" },
  ): Promise<ContainerProcess<string>>;
  exec(command: string[], options?: ExecOptions & SignalOptions): Promise<ContainerProcess<string | Uint8Array>>;
  async exec(
    command: string[],
    options: ExecOptions & SignalOptions = {},
  ): Promise<ContainerProcess<string | Uint8Array>> {
    const runner = this.#live();
    const { signal, ...execOptions } = options ?? {};
    const info = await runner.run(startProcess(this.id, command, execOptions), signal);
    return new ContainerProcess<string | Uint8Array>(runner, info, execOptions.mode ?? "text", {
      stdout: info.spec?.stdout !== StdioMode.IGNORE,
      stderr: info.spec?.stderr === StdioMode.PIPE || info.spec?.stderr === StdioMode.UNSPECIFIED,
    });
  }

  /**
   * Runs a shell command (`sh -c`) and resolves its `ExecutionResult` (stdout, stderr,
   * exitCode, success); `onStdout` / `onStderr` get output as it comes. A command past its
   * `timeoutMs` (default 60 s) is killed and rejects with `CommandTimeoutError`.
   * With `wait: false`, resolves a `CommandHandle` at once.
   */
  run(command: string, options: RunOptions & { wait: false }): Promise<CommandHandle>;
  run(command: string, options?: RunOptions & { wait?: true }): Promise<ExecutionResult>;
  run(command: string, options?: RunOptions): Promise<CommandHandle | ExecutionResult>;
  async run(command: string, options: RunOptions = {}): Promise<CommandHandle | ExecutionResult> {
    const runner = this.#live();
    // Loaded on first use: an app that never runs a command does not download its code.
    const { runCommand } = await commandHandles();
    return runCommand(runner, this.id, command, options);
  }

  /** A handle for a command started earlier (by any client), resuming at the given offsets. */
  async reconnect(commandId: string, options: ReconnectOptions = {}): Promise<CommandHandle> {
    const runner = this.#live();
    const { reconnectCommand } = await commandHandles();
    return reconnectCommand(runner, this.id, commandId, options);
  }

  /**
   * Resolves once the sandbox's `readinessProbe` has passed (at once when it has none). Throws
   * `TimeoutError` past `timeoutMs`, and the sandbox's own end (`SandboxTerminatedError`,
   * `SandboxTimeoutError`; `FailedPreconditionError` when it exited) if it finishes first. Exec probes work on the sbx server and the
   * fake; TCP probes on the fake only for now (the sbx server refuses them at create).
   */
  async waitUntilReady(options: WaitOptions = {}): Promise<void> {
    const runner = this.#live();
    const timeoutMs = options.timeoutMs === undefined ? undefined : validateDuration(options.timeoutMs, "timeoutMs");
    const { ready, sandbox } = await runner.run(waitUntilReady(this.id, timeoutMs), options.signal);
    this.#info = sandbox;
    if (!ready) {
      const code = this.#finishedCode(true);
      throw new FailedPreconditionError(`sandbox ${this.id} finished (return code ${code}) before it was ready`);
    }
  }

  /**
   * Changes the running sandbox: its outbound policy, replaced whole (see
   * `UpdateSandboxOptions`). The fake applies it as data; the sbx server answers
   * `UnsupportedError` until its per-sandbox network lands.
   */
  async update(options: UpdateSandboxOptions & SignalOptions): Promise<void> {
    const runner = this.#live();
    const { signal, ...update } = options ?? {};
    this.#info = await runner.run(updateSandbox(this.id, update), signal);
  }

  /**
   * The tunnels of the sandbox's exposed `ports`, by port inside the sandbox
   * (`{ 8000: { host, port, url } }`), once its readiness probe (if any) has passed;
   * `TimeoutError` past `timeoutMs`; `{}` for a sandbox created without `ports`. Works against the fake (listening on a port; its `onPort` handlers answer); the
   * sbx server answers `UnsupportedError` until its tunnels land.
   */
  async tunnels(options: WaitOptions = {}): Promise<Record<number, Tunnel>> {
    const runner = this.#live();
    const timeoutMs = options.timeoutMs === undefined ? undefined : validateDuration(options.timeoutMs, "timeoutMs");
    return runner.run(getTunnels(this.id, timeoutMs), options.signal);
  }

  /**
   * A token for HTTP requests to `port` (default 8080) through the token gateway: `{ url,
   * token }`, the token sent as `Authorization: Bearer`, as `?sbx_token=` (answered with a
   * cookie) or that cookie; the app receives `userMetadata` in `X-Verified-User-Data`. Works
   * against the fake (listening on a port); the sbx server answers `UnsupportedError` for now.
   */
  async createConnectToken(options: ConnectTokenOptions & SignalOptions = {}): Promise<ConnectCredentials> {
    const runner = this.#live();
    const { signal, ...tokenOptions } = options ?? {};
    return runner.run(createConnectToken(this.id, tokenOptions), signal);
  }

  /**
   * A service URL for `port` (LangSmith's): `svc.url`, `svc.fetch(path, init)` with a token
   * renewed before it expires, `svc.browserUrl()`. Works against the fake (listening on a
   * port); the sbx server answers `UnsupportedError` for now.
   */
  async service(port: number, options: ServiceOptions & SignalOptions = {}): Promise<ServiceUrl> {
    const runner = this.#live();
    const { signal, ...serviceOptions } = options ?? {};
    const issuedAtMs = Date.now();
    const first = await runner.run(createServiceToken(this.id, port, serviceOptions.expiresInMs), signal);
    return new ServiceUrl(this.id, port, serviceOptions, runner, first, issuedAtMs);
  }

  /**
   * A TCP connection to `port` inside the sandbox, as web byte streams (`{ readable, writable }`),
   * in every runtime, browsers included: a connection of its own to the server's tunnel route
   * (a WebSocket in browsers; Node, Deno, Bun: a plain HTTP/1.1 upgrade), authenticated with
   * the client's token (against the in-process fake, straight to its `onPortConnection`
   * handlers). Resolves once the port answered; `TunnelError` (with `port`) when nothing
   * listens there, `FailedPreconditionError` when the sandbox has finished.
   * `writable.close()` ends the sending side once sent (the readable goes on until the app ends);
   * cancelling the readable or aborting the writable closes the connection. Any port may be
   * connected to, not only the sandbox's exposed `ports`. The sbx server answers
   * `UnsupportedError` until its sandboxes have network addresses.
   */
  async connect(port: number, options: SignalOptions = {}): Promise<PortConnection> {
    const runner = this.#live();
    return runner.run(connectPort(this.id, port), options.signal);
  }

  /**
   * A local TCP listener on 127.0.0.1:`localPort` (0 or unset: any free port; Node, Deno, Bun)
   * whose every connection reaches `remotePort` inside the sandbox, all of them multiplexed over
   * one connection to the server, each with its own flow control (a slow local reader holds up
   * only its own connection). Resolves once that connection is up (the sandbox's errors, such
   * as `NotFoundError`, come here). `t.localPort`; `await t.close()` (or `await using`) stops
   * listening and ends the connections open through it. If the server connection drops, the
   * connections open through it are reset (their bytes in flight lost) and the tunnel
   * reconnects in the background, so new local connections work again once the server is
   * back. A local connection to a port where nothing listens in the sandbox is reset.
   * Browsers have no listener: `UnsupportedError` (use `sb.connect`).
   */
  async tunnel(remotePort: number, options: TunnelOptions = {}): Promise<LocalTunnel> {
    const runner = this.#live();
    validatePort(remotePort, "remotePort");
    const localPort = options.localPort ?? 0;
    if (localPort !== 0) validatePort(localPort, "localPort");
    const listen = this.#extras.listenLocal;
    if (!listen) {
      throw new UnsupportedError(
        `sb.tunnel needs a local TCP listener, which ${this.#extras.runtimeName ?? "this runtime package"} does not have ` +
          "(@sbx/node, @sbx/deno and @sbx/bun do); sb.connect works everywhere",
      );
    }
    const { openLocalTunnel } = await localTunnels();
    return openLocalTunnel({
      listen,
      localPort,
      remotePort,
      openSession: (signal) => runner.run(openPortSession(this.id), signal),
    });
  }

  /**
   * Stops using this object without terminating the sandbox (it keeps running on the
   * server); later calls on this object throw `ClientClosedError`.
   */
  async detach(): Promise<void> {
    this.#detached = true;
  }

  /** `await using sb = await client.sandboxes.create()` terminates the sandbox on scope exit. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#detached || this.#runner.closed) return;
    await this.terminate();
  }

  #entrypointProcess(): ContainerProcess<string> {
    const runner = this.#live();
    this.#entrypoint ??= new ContainerProcess<string>(
      runner,
      {
        $typeName: "sbx.v1.Process",
        sandboxId: this.id,
        processId: this.#info.entrypointProcessId || "entrypoint",
        running: true,
        pid: 0,
        stdoutLength: 0n,
        stderrLength: 0n,
        stdinLength: 0n,
        stdinClosed: false,
        sandboxEnded: false,
      },
      "text",
      { stdout: true, stderr: true },
    );
    return this.#entrypoint;
  }

  #finishedCode(raiseOnTermination: boolean): number {
    const status = this.#info.exitStatus;
    const kind = status?.kind.case;
    if (raiseOnTermination && status && kind === "timedOut") throw sandboxTimeoutError(this.id, status);
    if (raiseOnTermination && kind === "terminated") {
      throw new SandboxTerminatedError(`sandbox ${this.id} was terminated`);
    }
    return knownReturncode(this.#info.exitStatus, `sandbox ${this.id}`);
  }

  /** Files inside the sandbox. */
  get filesystem(): SandboxFilesystem {
    this.#filesystem ??=
      this.#extras.filesystem?.(() => this.#live(), this.id) ?? new SandboxFilesystem(() => this.#live(), this.id);
    return this.#filesystem;
  }

  /** A file's bytes (LangSmith's `read`). */
  read(path: string, options: FileCallOptions = {}): Promise<Uint8Array> {
    return this.filesystem.readBytes(path, options);
  }

  /** Writes text (as UTF-8) or bytes to a file (LangSmith's `write`). */
  write(path: string, content: string | Uint8Array, options: FileCallOptions = {}): Promise<void> {
    return typeof content === "string"
      ? this.filesystem.writeText(content, path, options)
      : this.filesystem.writeBytes(content, path, options);
  }

  /**
   * Opens a file as a Python-style handle (Modal's older `open`): `"r"` (default), `"w"`, `"a"`,
   * `"x"`, each with `"+"` to read and write and `"b"` for bytes instead of text. The whole file
   * is held in memory and written back on `flush()` / `close()`; see `SandboxFile`, and prefer
   * `filesystem` for large files.
   */
  open(path: string, mode?: OpenTextMode, options?: FileCallOptions): Promise<SandboxFile<string>>;
  open(path: string, mode: OpenBinaryMode, options?: FileCallOptions): Promise<SandboxFile<Uint8Array>>;
  open(
    path: string,
    mode?: OpenMode,
    options?: FileCallOptions,
  ): Promise<SandboxFile<string> | SandboxFile<Uint8Array>>;
  async open(
    path: string,
    mode: OpenMode = "r",
    options: FileCallOptions = {},
  ): Promise<SandboxFile<string> | SandboxFile<Uint8Array>> {
    const filesystem = this.filesystem;
    const { openSandboxFile } = await loadOnFirstUse(() => import("./file-handle.js"));
    return (await openSandboxFile(filesystem, path, mode, options)) as SandboxFile<string> | SandboxFile<Uint8Array>;
  }

  /** Entry names of a directory (Modal's older `ls`; see `filesystem.listFiles`). */
  async ls(path: string, options: FileCallOptions = {}): Promise<string[]> {
    return (await this.filesystem.listFiles(path, options)).map((entry) => entry.name);
  }

  /** Modal's older `mkdir` (parents only when asked; see `filesystem.makeDirectory`). */
  mkdir(
    path: string,
    options: FileCallOptions & {
      /** Also create missing parent directories (default false). */
      parents?: boolean;
    } = {},
  ): Promise<void> {
    return this.filesystem.makeDirectory(path, { ...options, createParents: options.parents ?? false });
  }

  /** Modal's older `rm` (see `filesystem.remove`). */
  rm(
    path: string,
    options: FileCallOptions & {
      /** Also remove a directory's contents (default false: a non-empty directory fails). */
      recursive?: boolean;
    } = {},
  ): Promise<void> {
    return this.filesystem.remove(path, options);
  }

  #live(): EffectRunner {
    if (this.#detached) throw new ClientClosedError(`sandbox object ${this.id} was detached`);
    if (this.#runner.closed) throw new ClientClosedError("the client is closed");
    return this.#runner;
  }
}
