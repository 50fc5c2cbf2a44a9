/**
 * `SandboxClient`: the entry point of the Promise API. Owns the runner every call runs on.
 */
import type { Transport } from "@connectrpc/connect";
import type { Sandbox as SandboxInfo } from "@sbx/proto";
import type { CallOptions } from "./call-options.js";
import { resolveConfig, type SandboxClientOptions } from "./config.js";
import { attachedConnectClients } from "./connect-clients.js";
import { EffectRunner } from "./effect-runner.js";
import { InvalidError } from "./errors.js";
import type { FilesystemFactory } from "./filesystem.js";
import { Images, type ImagesFactory } from "./images.js";
import type { ListenLocal } from "./local-tunnel.js";
import { attachedPortDialer } from "./port-dialer.js";
import { attachedTunnelChannel, type OpenTunnelChannel } from "./port-session.js";
import type { RawHttpClient } from "./raw-routes.js";
import type { RpcClients } from "./rpc.js";
import { Sandbox, type SandboxExtras } from "./sandbox.js";
import {
  type CreateSandboxOptions,
  createSandbox,
  getSandbox,
  type ListSandboxesOptions,
  listSandboxes,
  lookupSandbox,
  validateId,
} from "./sandbox-ops.js";

export type { CallOptions };

/**
 * `client.sandboxes`. `S` is the sandbox type the runtime package hands out (`LocalSandbox`
 * where local files exist); every sandbox is a `Sandbox` at run time.
 */
export class Sandboxes<S extends Sandbox = Sandbox> {
  readonly #runner: EffectRunner;
  readonly #extras: SandboxExtras;

  /** @internal `extras`: what the runtime adds to each sandbox (local files, local tunnels). */
  constructor(runner: EffectRunner, extras: SandboxExtras = {}) {
    this.#runner = runner;
    this.#extras = extras;
  }

  #sandbox(info: SandboxInfo): S {
    return new Sandbox(this.#runner, info, this.#extras) as S;
  }

  /** Creates a sandbox and starts its entrypoint. */
  async create(options: CreateSandboxOptions & CallOptions = {}): Promise<S> {
    const { signal, ...rest } = options ?? {};
    const info = await this.#runner.run(createSandbox(rest), signal);
    return this.#sandbox(info);
  }

  /** A sandbox by id (running or finished); `NotFoundError` if there is none. */
  async fromId(id: string, options: CallOptions = {}): Promise<S> {
    validateId(id, "sandbox id");
    return this.#sandbox(await this.#runner.run(getSandbox(id), options.signal));
  }

  /** The running sandbox with this name in `app` (default "default"); `NotFoundError` if none. */
  async fromName(
    name: string,
    options: {
      /** The app to look in (default "default"). */
      app?: string;
    } & CallOptions = {},
  ): Promise<S> {
    const info = await this.#runner.run(lookupSandbox(name, options.app), options.signal);
    return this.#sandbox(info);
  }

  /** Matching sandboxes, newest first, fetched page by page as you iterate. */
  async *list(options: ListSandboxesOptions & CallOptions = {}): AsyncGenerator<S> {
    const { signal, ...filter } = options;
    for await (const info of this.#runner.iterate(listSandboxes(filter), signal)) {
      yield this.#sandbox(info);
    }
  }
}

export interface ClientDefaults {
  /** Builds the adapter's RPC clients for an endpoint when the user gave no transport. */
  readonly createClients?: (endpoint: string) => RpcClients;
  /**
   * Builds RPC clients over a user's Connect transport (`connectClients` from
   * `@sbx/core/connect`). Without it, only transports made by `withConnectClients` work.
   */
  readonly connectClients?: (transport: Transport) => RpcClients;
  /** Builds the adapter's raw output reader (used with the adapter's own transport only). */
  readonly createRawHttp?: (endpoint: string) => RawHttpClient | undefined;
  /**
   * `sb.filesystem` with the runtime's local files (copyFromLocal / copyToLocal):
   * `localFilesystems(files)`. Passed by adapters, so that browser bundles leave it out.
   */
  readonly localFilesystem?: FilesystemFactory;
  /**
   * `client.images` with the runtime's local files (`import(path)`): `localImages(files)`.
   * Passed by adapters, so that browser bundles leave it out.
   */
  readonly localImages?: ImagesFactory;
  /**
   * `sb.tunnel`'s local TCP listener (Node, Deno, Bun). Without it `sb.tunnel` throws
   * `UnsupportedError` naming `runtimeName`; `sb.connect` works everywhere.
   */
  readonly localTunnel?: ListenLocal;
  /**
   * How `sb.connect` / `sb.tunnel` reach the server's tunnel route (with the adapter's own
   * transport): the Node, Deno and Bun packages bring a plain HTTP/1.1 upgrade. Default: a
   * WebSocket.
   */
  readonly tunnelChannel?: OpenTunnelChannel;
  /** The runtime, as errors name it ("the browser (@sbx/web)"). */
  readonly runtimeName?: string;
  /** Environment defaults (`SBX_ENDPOINT`, `SBX_TOKEN`) as the adapter's runtime reads them. */
  readonly env?: { readonly endpoint?: string | undefined; readonly token?: string | undefined };
}

/**
 * The Promise API's entry point. Runtime packages subclass it with their transport; `S` is the
 * sandbox type they hand out (`LocalSandbox` in Node, Deno and Bun, plain `Sandbox` in
 * browsers), `I` their `images` (`LocalImages`, with `import(path)`, where local files exist).
 */
export class SandboxClient<S extends Sandbox = Sandbox, I extends Images = Images> implements AsyncDisposable {
  readonly sandboxes: Sandboxes<S>;
  /** Images on the server: pull from registries, list, get, delete, import archives. */
  readonly images: I;
  readonly endpoint: string;
  readonly #runner: EffectRunner;

  constructor(options: SandboxClientOptions = {}, defaults: ClientDefaults = {}) {
    const config = resolveConfig({
      ...options,
      endpoint: options.endpoint ?? defaults.env?.endpoint,
      token: options.token ?? defaults.env?.token,
    } as SandboxClientOptions);
    const clients = options.transport
      ? clientsOver(options.transport, defaults)
      : defaults.createClients?.(config.endpoint);
    if (!clients) {
      throw new InvalidError(
        "no transport: pass { transport } or use a runtime package (@sbx/node, @sbx/web, @sbx/deno, @sbx/bun)",
      );
    }
    this.endpoint = config.endpoint;
    const rawHttp = options.transport ? undefined : defaults.createRawHttp?.(config.endpoint);
    // The in-process fake's transport reaches its ports itself; anything else goes through the
    // endpoint's tunnel route, over the adapter's channel (or the transport's) or a WebSocket.
    const ports = options.transport
      ? { dialer: attachedPortDialer(options.transport), channel: attachedTunnelChannel(options.transport) }
      : { channel: defaults.tunnelChannel };
    this.#runner = new EffectRunner(clients, config, rawHttp, ports);
    this.sandboxes = new Sandboxes<S>(this.#runner, {
      ...(defaults.localFilesystem ? { filesystem: defaults.localFilesystem } : {}),
      ...(defaults.localTunnel ? { listenLocal: defaults.localTunnel } : {}),
      ...(defaults.runtimeName ? { runtimeName: defaults.runtimeName } : {}),
    });
    this.images = (defaults.localImages?.(this.#runner) ?? new Images(this.#runner)) as I;
  }

  /** Closes the client: pending calls reject with `ClientClosedError`, later calls too. */
  async close(): Promise<void> {
    await this.#runner.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** RPC clients over the user's Connect transport: the adapter's way, else the transport's own. */
function clientsOver(transport: Transport, defaults: ClientDefaults): RpcClients {
  if (typeof transport !== "object" || transport === null)
    throw new InvalidError("transport must be a Connect transport");
  const clients = defaults.connectClients?.(transport) ?? attachedConnectClients(transport);
  if (!clients) {
    throw new InvalidError(
      "this runtime package speaks the Connect protocol itself and has no Connect client for a transport: " +
        "pass withConnectClients(transport) from @sbx/core/connect (fake.transport from @sbx/testing already is)",
    );
  }
  return clients;
}
