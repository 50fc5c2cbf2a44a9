/**
 * `createFakeServer()`: the sbx protocol for users' tests — the server's own engine (every
 * handler, check and lifecycle rule) over the in-memory runtime driver and an in-memory
 * store. Usable in-process (`fake.transport`, no network, browser-safe) or over a real port
 * (`listen()`, with the raw HTTP routes too). Each sandbox has its own in-memory filesystem,
 * which the mini shell's processes share.
 */
import { type ConnectRouter, createRouterTransport, type Transport } from "@connectrpc/connect";
import { withConnectClients, withPortDialer } from "@sbx/core/connect";
import {
  Engine,
  engineRoutes,
  memoryOutputStorage,
  memoryStateStore,
  type TunnelScheme,
  tunnelDomainOf,
} from "@sbx/server-kit";
import type { Listener, ListenOptions } from "@sbx/server-kit/listen";
import { FakeImageStore, type FakeImages } from "./fake-images.js";
import { FakeIngress } from "./fake-ingress.js";
import { FakeRuntime } from "./fake-runtime.js";
import { type CutStreamsOptions, type FailNextOptions, type FaultMethod, Faults, type RecordedCall } from "./faults.js";
import { type ExecHandler, type ExecPattern, HandlerRegistry } from "./handlers.js";
import { inProcessPortDialer } from "./in-process-port-dialer.js";
import { KeepAlive } from "./keep-alive.js";
import { type PortConnectionHandler, type PortHandler, PortRegistry } from "./ports.js";

export interface FakeServerOptions {
  /** Delay every call by this long (streams: before the first message). */
  readonly latencyMs?: number;
  /** The built-in mini shell for unmatched commands (echo, cat, sleep, …). Default true. */
  readonly defaultHandlers?: boolean;
  /** When set, every call must carry `Authorization: Bearer <token>` (else UNAUTHENTICATED). */
  readonly token?: string;
  /**
   * Bytes of output kept per process stream, like the server's `outputRetentionMiB` (default
   * 64 MiB); reading dropped bytes fails with OutputDroppedError.
   */
  readonly outputRetentionBytes?: number;
  /**
   * As the server's `tunnelDomain`: once the fake listens, sandbox ports are host names on its
   * own port — tunnels `<port>-<sandbox id>.<domain>`, connect-token and service URLs
   * `<port>-<sandbox id>-auth.<domain>` — routed by the server's own front door. A test reaches
   * them by sending the host name (Host header, or a lookup that resolves it to the fake).
   */
  readonly tunnelDomain?: string;
  /** As the server's: the scheme of tunnel-domain URLs (default "https"). */
  readonly tunnelScheme?: TunnelScheme;
  /** As the server's: the port of tunnel-domain URLs (default 443 for https, the fake's own port for http). */
  readonly tunnelPublicPort?: number;
}

export interface FakeServer {
  /** An in-process Connect transport: pass it as `new SandboxClient({ transport })`. */
  readonly transport: Transport;
  /** Mounts the fake's services into your own Connect router. */
  readonly routes: (router: ConnectRouter) => void;
  /** Every RPC received, in order, including failed ones. */
  readonly calls: readonly RecordedCall[];
  /**
   * The fake's images: `images.add(reference, { env, workingDir, user, files, credentials })`
   * puts an image into its registry, for `client.images.fromRegistry` and
   * `sandboxes.create({ image })` to pull.
   */
  readonly images: FakeImages;
  /** Scripts processes whose command matches `pattern` (latest registration wins). */
  onExec(pattern: ExecPattern, handler: ExecHandler): void;
  /**
   * Scripts what answers HTTP on `port` inside every sandbox (the handler gets fetch's
   * `Request` and the sandbox id, and answers a `Response`; latest registration wins;
   * `handler: undefined` stops it listening). A port with a handler passes `Probe.tcp(port)`
   * and is what `sb.tunnels()`, connect tokens and `sb.service()` reach — over real
   * listeners, so those need `listen()` first (Node).
   */
  onPort(port: number, handler: PortHandler | undefined): void;
  /**
   * Scripts what takes raw connections to `port` inside every sandbox: each connection
   * through a tunnel or the token gateway is handed to `handler` as a pair of web byte
   * streams (for WebSockets or any other protocol); it replaces an `onPort` handler of that
   * port (latest registration wins; `handler: undefined` stops it listening).
   */
  onPortConnection(port: number, handler: PortConnectionHandler | undefined): void;
  /**
   * The next `times` calls of `method` fail with `code`. `method` is an RPC name ("StartProcess"
   * or "startProcess") or a short alias ("exec"). With `{ imageError }` instead of a code, the
   * next pulls ("pullImage": by PullImage or by a create that pulls) or imports ("importImage")
   * fail in the image store, as the server's store fails (e.g. "connection", "digest-mismatch").
   */
  failNext(method: FaultMethod, options: FailNextOptions): void;
  /** The next output and file-read streams (ReadOutput, ReadFile) fail with UNAVAILABLE after `afterBytes` bytes. */
  cutStreams(options: CutStreamsOptions): void;
  /** Drops injected failures and cuts that have not happened yet. */
  clearFaults(): void;
  setLatency(ms: number): void;
  /**
   * Serves the fake on a real port (Connect over HTTP/1.1 and HTTP/2, gRPC, and the raw HTTP
   * routes), Node only. A test double: it listens on loopback by default; do not expose it to
   * a network (its token check is a plain comparison, and it keeps everything in memory).
   */
  listen(options?: ListenOptions): Promise<Listener>;
  /** Stops listeners and ends every sandbox, process and timer. */
  close(): Promise<void>;
}

export function createFakeServer(options: FakeServerOptions = {}): FakeServer {
  const tunnelDomain = tunnelDomainOf(options);
  const handlers = new HandlerRegistry();
  const faults = new Faults(options.token);
  const images = new FakeImageStore(faults);
  const ports = new PortRegistry();
  const ingress = new FakeIngress();
  const runtime = new FakeRuntime({ handlers, defaultHandlers: options.defaultHandlers ?? true, images, ports });
  const engine = new Engine(
    { runtime, store: memoryStateStore(), outputs: memoryOutputStorage(), images, ingress },
    { outputRetentionBytes: options.outputRetentionBytes },
  );
  faults.latencyMs = options.latencyMs ?? 0;
  const routes: (router: ConnectRouter) => void = engineRoutes(engine);
  const keepAlive = new KeepAlive();
  // The keep-alive is outermost, so injected latency counts as a call in flight too.
  const interceptors = [keepAlive.interceptor, faults.interceptor];
  const listeners: { close(): Promise<void> }[] = [];
  let tokens: import("@sbx/server-kit/ingress").IngressTokens | undefined;
  return {
    // It carries its sbx clients, so runtime packages without a Connect client (@sbx/web) take it too.
    // And its port dialer: sb.connect / sb.tunnel reach onPortConnection handlers without a listener.
    transport: withPortDialer(
      withConnectClients(createRouterTransport(routes, { router: { interceptors } })),
      inProcessPortDialer(engine, ports),
    ),
    routes,
    calls: faults.calls,
    images,
    onExec: (pattern, handler) => handlers.add(pattern, handler),
    onPort: (port, handler) => (handler === undefined ? ports.remove(port) : ports.add(port, handler)),
    onPortConnection: (port, handler) =>
      handler === undefined ? ports.remove(port) : ports.addConnection(port, handler),
    failNext: (method, failure) => faults.failNext(method, failure),
    cutStreams: (cut) => faults.cutStreams(cut),
    clearFaults: () => faults.clear(),
    setLatency(ms) {
      if (!Number.isFinite(ms) || ms < 0) throw new TypeError("latency must be a non-negative number of ms");
      faults.latencyMs = ms;
    },
    async listen(listenOptions) {
      // Loaded on demand so the in-process fake stays free of node: imports (browser-safe).
      const [
        { listenConnect },
        { rawRoutes },
        { IngressTokens, ListenerIngress, tunnelRoute, randomTokenKey, tunnelHostRouter },
        { FakePortDialer },
      ] = await Promise.all([
        import("@sbx/server-kit/listen"),
        import("@sbx/server-kit/raw-routes"),
        import("@sbx/server-kit/ingress"),
        import("./fake-port-dialer.js"),
      ]);
      const token = options.token;
      const authorize = (header: string | null | undefined) => token === undefined || header === `Bearer ${token}`;
      const dialer = new FakePortDialer(ports);
      // The server's own gateway and tokens (a key of this fake's alone, in memory).
      tokens ??= new IngressTokens(randomTokenKey());
      const listener = await listenConnect(routes, interceptors, {
        ...listenOptions,
        plainRoutes: [...(listenOptions?.plainRoutes ?? []), ...rawRoutes(engine, authorize, faults.rawCall)],
        // sb.connect / sb.tunnel: the server's own tunnel route, dialing the port registry.
        upgradeRoutes: [...(listenOptions?.upgradeRoutes ?? []), tunnelRoute({ engine, dialer, authorize })],
        // Under a tunnel domain, sandbox host names on this same port go to their sandboxes.
        ...(tunnelDomain ? { hostRouter: tunnelHostRouter({ domain: tunnelDomain, engine, dialer, tokens }) } : {}),
      });
      listeners.push(listener);
      // Sandbox ports are served on the same host (the first listen's, if several), or by
      // host name on its port under a tunnel domain.
      if (!ingress.attached) {
        const portIngress = new ListenerIngress({
          host: new URL(listener.url).hostname.replace(/^\[|\]$/g, ""),
          tokens,
          dialer,
          tunnelDomain,
          apiPort: listener.port,
        });
        ingress.attach(portIngress);
        listeners.push(portIngress);
      }
      return listener;
    },
    async close() {
      await engine.shutdown();
      keepAlive.close();
      await Promise.all(listeners.splice(0).map((l) => l.close()));
    },
  };
}
