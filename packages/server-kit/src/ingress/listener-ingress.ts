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
import { type AddressInfo, createServer as createTcpServer, type Socket, type Server as TcpServer } from "node:net";
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

/** How long a tunnel waits for a client's first bytes before taking it for a protocol where the server speaks first. */
const SNIFF_MS = 300;

/**
 * The start of an HTTP/1.x request as any server might take it: empty lines, a method (a token,
 * in any case), a space, and a request target (a path, "*" or an http(s) URI). The relay
 * (the sbx server's tunnels) reads it so too, whatever the bytes come split into.
 */
const HTTP_REQUEST_START = /^[\r\n]*[-!#$%&'*+.^_`|~0-9A-Za-z]{1,32} (\/|\*|https?:\/\/)/i;

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
   * for other sandboxes. Anything else (plain TCP, HTTP/2 with prior knowledge, a protocol
   * where the server speaks first: nothing from the client within SNIFF_MS) is piped to a
   * connection the dialer makes, untouched.
   */
  async #listenTcp(sandboxId: string, port: number): Promise<PortListener> {
    const sockets = new Set<Socket>();
    const http = this.#httpServer({ sandboxId, port, tokens: undefined });
    const server = createTcpServer({ allowHalfOpen: true, noDelay: true, pauseOnConnect: true }, (socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => socket.destroy());
      const raw = (first: Buffer | undefined) => {
        this.options.dialer.dial(sandboxId, port).then(
          (upstream) => {
            sockets.add(upstream as Socket);
            upstream.on("close", () => sockets.delete(upstream as Socket));
            upstream.on("error", () => socket.destroy());
            socket.on("close", () => upstream.destroy());
            upstream.on("close", () => socket.destroy());
            if (first) upstream.write(first);
            socket.pipe(upstream);
            upstream.pipe(socket);
          },
          () => socket.destroy(),
        );
      };
      const timer = setTimeout(() => {
        socket.off("data", onFirst);
        socket.pause();
        raw(undefined);
      }, SNIFF_MS);
      const onFirst = (chunk: Buffer) => {
        clearTimeout(timer);
        socket.pause();
        if (HTTP_REQUEST_START.test(chunk.subarray(0, 64).toString("latin1"))) {
          socket.unshift(chunk);
          http.emit("connection", socket);
          socket.resume();
        } else {
          raw(chunk);
        }
      };
      socket.once("data", onFirst);
      socket.once("close", () => clearTimeout(timer));
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
      server.listen(0, this.options.host, () => resolve());
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
