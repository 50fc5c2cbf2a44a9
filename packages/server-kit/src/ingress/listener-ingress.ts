/**
 * The engine's ingress seam (`SandboxIngress`) over real listeners (Node), the same for the
 * sbx server and the fake once it listens: each sandbox port reached from outside gets a
 * listener on `host` — one open (a tunnel to an exposed port: each connection piped to a
 * connection the target's dialer makes, HTTP/1.x request by request, so HTTP/1.1, HTTP/2,
 * WebSockets and any other protocol pass), one behind the token gateway (connect tokens and
 * service URLs share it: HTTP, checked request by request) — through the target's dialer.
 * A target with a tunnel plane (the sbx server's relay) serves its tunnels there instead, out
 * of this process. Tokens are tokens.ts's; a sandbox's listeners close and its tokens are
 * revoked when it ends.
 */
import { createServer, type Server } from "node:http";
import {
  type AddressInfo,
  createServer as createTcpServer,
  isIPv6,
  type Socket,
  type Server as TcpServer,
} from "node:net";
import type { Duplex } from "node:stream";
import type { IngressToken, IngressTokenRequest, IngressTunnel, SandboxIngress } from "../engine/ingress.js";
import { type GatewayRoute, type IngressDialer, IngressGateway } from "./gateway.js";
import type { IngressTokens } from "./tokens.js";
import type { TunnelDomain } from "./tunnel-domain.js";

export interface ListenerIngressOptions {
  /** The address the listeners bind (the server's listen host). */
  readonly host: string;
  readonly tokens: IngressTokens;
  readonly dialer: IngressDialer;
  /** Where tunnels are served instead of this process's own listeners (the sbx server's relay). */
  readonly tunnelPlane?: TunnelPlane;
  readonly onError?: (error: unknown) => void;
  /**
   * Sandbox ports by host name under this domain, on the API's own port, instead of a listener
   * each: tunnels and token URLs are names (tunnel-domain.ts) the front door routes (host-router.ts).
   */
  readonly tunnelDomain?: TunnelDomain | undefined;
  /** The API's own port (a tunnel domain's http URLs name it unless told another), if known now; else see `apiListening`. */
  readonly apiPort?: number | undefined;
}

/**
 * Tunnels served outside this process (the sbx server's relay: its bytes never pass through
 * the event loop). It keeps what a tunnel here keeps: HTTP/1.x is read request by request,
 * and sbx's token cookies, a caller's X-Verified-User-Data and the sbx_token parameter never
 * reach the app, as `authorizeRequest` decides for an open tunnel; an upgrade is piped only
 * once the app switched protocols; anything else is piped as it is.
 */
export interface TunnelPlane {
  /** A listener on `host` (any free port) for `port` of a running sandbox. */
  openTunnel(sandboxId: string, port: number, host: string): Promise<PlaneTunnel>;
  /** Closes it and every connection through it. */
  closeTunnel(sandboxId: string, port: number): Promise<void>;
}

export interface PlaneTunnel {
  readonly host: string;
  readonly port: number;
  /** Settles if the tunnel is gone otherwise than by closeTunnel (the next `tunnels` opens another). */
  readonly lost: Promise<void>;
}

type Kind = "tunnel" | "gateway";

/** How long a tunnel waits for a client's first bytes before connecting it to the app (see `#listenTcp`). */
const SNIFF_MS = 300;
/** How long a tunnel's connection may stay with no byte either way before it is closed. */
const SILENT_IDLE_MS = 30_000;
/** How long a piped connection (another protocol) may move no byte either way (generous: an interactive session stays). */
const RAW_IDLE_MS = 60 * 60_000;
/** How long the start of a request may take to show what it is. */
const SNIFF_LIMIT_MS = 60_000;

const HTTP2_PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/**
 * What a connection's first bytes are, whatever they come split into: the start of an HTTP/1.x
 * request as any server might take it (empty lines, a method — a token, in any case — a space,
 * and a request target: a path, "*" or an http(s) URI), anything else (HTTP/2's preface among
 * it), or not known yet. The relay (the sbx server's tunnels, agent/relay_http.go) reads it so too.
 */
export function sniffStart(bytes: Buffer): "http" | "raw" | "more" {
  const text = bytes.subarray(0, 256).toString("latin1");
  if (text.length < HTTP2_PREFACE.length ? HTTP2_PREFACE.startsWith(text) : text.startsWith(HTTP2_PREFACE)) {
    return text.length >= HTTP2_PREFACE.length ? "raw" : "more";
  }
  const start = text.replace(/^[\r\n]*/, "");
  const method = /^[-!#$%&'*+.^_`|~0-9A-Za-z]*/.exec(start)?.[0] ?? "";
  if (method.length === start.length) {
    // (Only empty lines so far, past any bound: left to the HTTP parser, which refuses them.)
    if (start.length === 0 && bytes.length > 4096) return "http";
    return method.length <= 32 ? "more" : "raw";
  }
  if (method.length === 0 || method.length > 32 || start[method.length] !== " ") return "raw";
  const rest = start.slice(method.length + 1).toLowerCase();
  if (rest === "") return "more";
  if (rest[0] === "/" || rest[0] === "*") return "http";
  for (const scheme of ["http://", "https://"]) {
    if (rest.startsWith(scheme)) return "http";
    if (scheme.startsWith(rest)) return "more";
  }
  return "raw";
}

interface PortListener {
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Closes it and the connections through it. */
  close(): Promise<void>;
}

export class ListenerIngress implements SandboxIngress {
  readonly #gateway: IngressGateway;
  readonly #listeners = new Map<string, Promise<PortListener>>();
  #closed = false;
  #apiPort: number | undefined;

  constructor(readonly options: ListenerIngressOptions) {
    this.#gateway = new IngressGateway({
      dialer: options.dialer,
      ...(options.onError ? { onError: options.onError } : {}),
    });
    this.#apiPort = options.apiPort;
  }

  /** The API listens on `port` now (for a tunnel domain's URLs: see TunnelDomainOptions.publicPort). */
  apiListening(port: number): void {
    this.#apiPort = port;
  }

  async tunnels(sandboxId: string, ports: readonly number[]): Promise<IngressTunnel[]> {
    const domain = this.options.tunnelDomain;
    if (domain) {
      return ports.map((containerPort) => {
        const host = domain.hostName("tunnel", sandboxId, containerPort);
        return { containerPort, host, ...domain.endpoint(host, this.#apiPort) };
      });
    }
    return Promise.all(
      ports.map(async (containerPort) => {
        const at = await this.#serve("tunnel", sandboxId, containerPort);
        return { containerPort, host: at.host, port: at.port, url: at.url };
      }),
    );
  }

  async createToken(request: IngressTokenRequest): Promise<IngressToken> {
    const domain = this.options.tunnelDomain;
    if (domain) {
      const host = domain.hostName("gateway", request.sandboxId, request.port);
      const { url } = domain.endpoint(host, this.#apiPort);
      const { token, expiresAtMs } = await this.options.tokens.issue(request);
      return { url, token, expiresAtMs };
    }
    const at = await this.#serve("gateway", request.sandboxId, request.port);
    const { token, expiresAtMs } = await this.options.tokens.issue(request);
    return { url: at.url, token, expiresAtMs };
  }

  sandboxEnded(sandboxId: string): void {
    this.options.tokens.revokeSandbox(sandboxId);
    for (const [key, made] of this.#listeners) {
      if (key.split(" ")[1] !== sandboxId) continue;
      this.#listeners.delete(key);
      void made
        .then(
          (listener) => listener.close(),
          () => {},
        )
        .catch((error) => this.options.onError?.(error));
    }
  }

  /** Closes every listener (and the connections through them). */
  async close(): Promise<void> {
    this.#closed = true;
    const made = [...this.#listeners.values()];
    this.#listeners.clear();
    await Promise.all(
      made.map((m) =>
        m
          .then(
            (listener) => listener.close(),
            () => {},
          )
          .catch(() => {}),
      ),
    );
  }

  #serve(kind: Kind, sandboxId: string, port: number): Promise<PortListener> {
    if (this.#closed) return Promise.reject(new Error("the ingress is closed"));
    const key = `${kind} ${sandboxId} ${port}`;
    let made = this.#listeners.get(key);
    if (!made) {
      const plane = this.options.tunnelPlane;
      const forget = () => {
        if (this.#listeners.get(key) === made) this.#listeners.delete(key);
      };
      made =
        kind === "gateway"
          ? this.#listen({ sandboxId, port, tokens: this.options.tokens })
          : plane
            ? this.#planeTunnel(plane, sandboxId, port, forget)
            : this.#listenTcp(sandboxId, port);
      made.catch(forget);
      this.#listeners.set(key, made);
    }
    return made;
  }

  /** A tunnel served by the tunnel plane; `lost`: it went otherwise than by close. */
  async #planeTunnel(plane: TunnelPlane, sandboxId: string, port: number, lost: () => void): Promise<PortListener> {
    const tunnel = await plane.openTunnel(sandboxId, port, this.options.host);
    void tunnel.lost.then(lost);
    return {
      url: listenerUrl(tunnel.host, tunnel.port),
      host: tunnel.host,
      port: tunnel.port,
      close: () => plane.closeTunnel(sandboxId, port),
    };
  }

  /**
   * A tunnel. A connection whose first bytes are an HTTP/1.x request goes through the gateway
   * (no token asked for): request by request, so sbx's token cookies and a caller's
   * X-Verified-User-Data never reach the app — listeners share one host, and browsers send a
   * host's cookies to all its ports, so a tunnel's app would otherwise get the visitor's tokens
   * for other sandboxes. Anything else (plain TCP, HTTP/2 with prior knowledge) is piped to a
   * connection the dialer makes, untouched. A client that says nothing within SNIFF_MS (a
   * protocol where the server speaks first, or a browser's connection made ahead of its first
   * request) is connected to the app, whose bytes pass on to it, while its own first bytes are
   * still read for what they are: a request goes through the gateway if the app has said
   * nothing yet, and ends the connection if it has; anything else is piped. Timing alone never
   * lets a request through unread. Idle connections end (SILENT_IDLE_MS, RAW_IDLE_MS).
   */
  async #listenTcp(sandboxId: string, port: number): Promise<PortListener> {
    const sockets = new Set<Socket>();
    const http = this.#httpServer({ sandboxId, port, tokens: undefined });
    const server = createTcpServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => socket.destroy());
      // No byte either way for this long: closed (the HTTP server keeps its own times once it has it).
      socket.setTimeout(SILENT_IDLE_MS, () => socket.destroy());
      const chunks: Buffer[] = [];
      let verdict: "http" | "raw" | undefined;
      /** The app's connection, once dialled. */
      let app: Duplex | undefined;
      let appSpoke = false;
      let silent = false;
      let startLimit: NodeJS.Timeout | undefined;
      const onClientGone = () => app?.destroy();
      const onAppGone = () => socket.destroy();
      const link = (to: Duplex) => {
        app = to;
        sockets.add(to as Socket);
        to.on("close", () => sockets.delete(to as Socket));
        to.on("error", onAppGone);
        to.on("close", onAppGone);
        socket.on("close", onClientGone);
      };
      const dial = () =>
        this.options.dialer.dial(sandboxId, port).then(
          (to) => {
            if (socket.destroyed || verdict === "http") {
              to.on("error", () => {});
              to.destroy();
              return undefined;
            }
            link(to);
            return to;
          },
          () => {
            socket.destroy();
            return undefined;
          },
        );
      const pipeClient = (to: Duplex) => {
        socket.setTimeout(RAW_IDLE_MS);
        to.write(Buffer.concat(chunks));
        if (socket.readableEnded) to.end();
        else socket.pipe(to);
        socket.resume();
      };
      const decide = (what: "http" | "raw") => {
        verdict = what;
        clearTimeout(silence);
        clearTimeout(startLimit);
        socket.off("data", onData);
        socket.off("end", onEnd);
        socket.pause();
        if (what === "raw") {
          if (app) pipeClient(app);
          else if (!silent)
            void dial().then((to) => {
              if (!to) return;
              to.pipe(socket);
              pipeClient(to);
            });
          // (else: the dial under way pipes it)
          return;
        }
        if (appSpoke) {
          // The app spoke first: the request would reach it unread. The connection ends.
          socket.destroy();
          return;
        }
        if (app) {
          // (The connection made for a silent client is let go; the gateway dials its own.)
          const unused = app;
          app = undefined;
          socket.off("close", onClientGone);
          unused.off("error", onAppGone);
          unused.off("close", onAppGone);
          unused.unpipe(socket);
          unused.on("error", () => {});
          unused.destroy();
        }
        socket.setTimeout(0);
        socket.unshift(Buffer.concat(chunks));
        http.emit("connection", socket);
        socket.resume();
      };
      const onData = (chunk: Buffer) => {
        chunks.push(chunk);
        if (!silent) clearTimeout(silence);
        startLimit ??= setTimeout(() => socket.destroy(), SNIFF_LIMIT_MS);
        const what = sniffStart(Buffer.concat(chunks));
        if (what !== "more") decide(what);
      };
      // A client that ends its side before saying anything: piped (its end passed on); in the
      // middle of a request's start: closed.
      const onEnd = () => (chunks.length === 0 ? decide("raw") : socket.destroy());
      // Silent: connected to the app, whose bytes pass on; the client's first bytes still decide.
      const silence = setTimeout(() => {
        silent = true;
        void dial().then((to) => {
          if (!to) return;
          to.once("data", () => {
            if (verdict === undefined) appSpoke = true;
            socket.setTimeout(RAW_IDLE_MS);
          });
          to.once("end", () => {
            if (verdict === undefined) appSpoke = true;
          });
          to.pipe(socket);
          if (verdict === "raw") pipeClient(to);
        });
      }, SNIFF_MS);
      socket.on("data", onData);
      socket.on("end", onEnd);
      socket.once("close", () => {
        clearTimeout(silence);
        clearTimeout(startLimit);
      });
      socket.resume();
    });
    return await this.#bind(server, sockets);
  }

  async #listen(route: GatewayRoute): Promise<PortListener> {
    const sockets = new Set<Socket>();
    const server = this.#httpServer(route);
    server.on("connection", (socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
    });
    return await this.#bind(server, sockets);
  }

  /** An HTTP server (not listening itself) whose requests and upgrades go through the gateway for `route`. */
  #httpServer(route: GatewayRoute): Server {
    const report = (error: unknown) => this.options.onError?.(error);
    const server = createServer((req, res) => {
      this.#gateway.request(route, req, res).catch(report);
    });
    server.on("upgrade", (req, socket, head) => {
      this.#gateway.upgrade(route, req, socket, head).catch((error) => {
        socket.destroy();
        report(error);
      });
    });
    return server;
  }

  async #bind(server: Server | TcpServer, sockets: Set<Socket>): Promise<PortListener> {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      // Its own family only (an IPv6 address does not take IPv4's too).
      server.listen({ port: 0, host: this.options.host, ipv6Only: isIPv6(this.options.host) }, () => resolve());
    });
    server.unref();
    const address = server.address() as AddressInfo;
    const host = address.address;
    return {
      url: listenerUrl(host, address.port),
      host,
      port: address.port,
      close: () =>
        new Promise((resolve) => {
          server.close(() => resolve());
          // Upgraded (WebSocket) connections are no longer the server's to close: end them here.
          for (const socket of sockets) socket.destroy();
        }),
    };
  }
}

function listenerUrl(host: string, port: number): string {
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
}
