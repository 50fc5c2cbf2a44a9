/**
 * The fake's ingress (the engine's `SandboxIngress`): tunnels and the token gateway in front
 * of the port registry. Tokens are random and kept in memory, bound to one sandbox, one port
 * and one audience, dying with the sandbox. The gateway takes a token as
 * `Authorization: Bearer`, as `?sbx_token=` (answered with a redirect that sets a cookie) or
 * as that cookie; it strips sbx's credentials and any caller's `X-Verified-User-Data` before
 * the handler sees the request, and adds its own from the token's metadata. Everything here
 * works on fetch's `Request`/`Response` (browser-safe); the listeners that carry real
 * connections are made by `listen()` (fake-port-listeners.ts, Node).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { IngressToken, IngressTokenRequest, IngressTunnel, SandboxIngress } from "@sbx/server-kit";
import type { PortRegistry } from "./ports.js";

/** What a listener serves: a port's open tunnel, or its token-checked gateway. */
export type IngressKind = "tunnel" | "gateway";

/** Made by `listen()`: a real listener for one sandbox port, answering through `handle`. */
export type ServePort = (kind: IngressKind, sandboxId: string, port: number) => Promise<{ host: string; port: number }>;

interface TokenRecord extends IngressTokenRequest {
  readonly expiresAtMs: number;
}

export const TOKEN_PARAM = "sbx_token";
export const VERIFIED_USER_DATA = "x-verified-user-data";
export const cookieName = (sandboxId: string, port: number) => `sbx_${sandboxId}_${port}`;

export class FakeIngress implements SandboxIngress {
  readonly #tokens = new Map<string, TokenRecord>();
  /** Set by `listen()`; until then there is nowhere to serve a port. */
  serve: ServePort | undefined;
  /** Called when a sandbox ends, so its listeners close. */
  onSandboxEnded: ((sandboxId: string) => void) | undefined;

  constructor(readonly ports: PortRegistry) {}

  async tunnels(sandboxId: string, ports: readonly number[]): Promise<IngressTunnel[]> {
    const serve = this.#server();
    return Promise.all(
      ports.map(async (containerPort) => {
        const at = await serve("tunnel", sandboxId, containerPort);
        return { containerPort, host: at.host, port: at.port, url: urlOf(at) };
      }),
    );
  }

  async createToken(request: IngressTokenRequest): Promise<IngressToken> {
    const at = await this.#server()("gateway", request.sandboxId, request.port);
    const bytes = new Uint8Array(32);
    crypto.getRandomValues(bytes);
    const token = btoa(String.fromCharCode(...bytes))
      .replace(/=+$/, "")
      .replace(/\+/g, "-")
      .replace(/\//g, "_");
    const expiresAtMs = request.expiresInMs > 0 ? Date.now() + request.expiresInMs : 0;
    this.#tokens.set(token, { ...request, expiresAtMs });
    return { url: urlOf(at), token, expiresAtMs };
  }

  sandboxEnded(sandboxId: string): void {
    for (const [token, record] of this.#tokens) if (record.sandboxId === sandboxId) this.#tokens.delete(token);
    this.onSandboxEnded?.(sandboxId);
  }

  /** One request to a listener of `kind` for a sandbox's port. */
  async handle(kind: IngressKind, sandboxId: string, port: number, request: Request): Promise<Response> {
    let forward = request;
    if (kind === "gateway") {
      const checked = this.#checkToken(sandboxId, port, request);
      if (checked instanceof Response) return checked;
      forward = checked;
    }
    const handler = this.ports.find(port);
    if (!handler) return new Response(`nothing listens on port ${port} in sandbox ${sandboxId}\n`, { status: 502 });
    return handler(forward, { sandboxId, port });
  }

  /** The request as the app gets it, or the gateway's answer (401, or the cookie redirect). */
  #checkToken(sandboxId: string, port: number, request: Request): Request | Response {
    const url = new URL(request.url);
    const headers = new Headers(request.headers);
    const cookie = cookieName(sandboxId, port);
    const cookies = parseCookies(headers.get("cookie"));
    const bearer = /^Bearer (.+)$/i.exec(headers.get("authorization") ?? "")?.[1];
    const fromQuery = url.searchParams.get(TOKEN_PARAM);
    const token = bearer ?? fromQuery ?? cookies.get(cookie);
    const record = token === undefined ? undefined : this.#tokens.get(token);
    const valid =
      record !== undefined &&
      record.sandboxId === sandboxId &&
      record.port === port &&
      (record.expiresAtMs === 0 || Date.now() < record.expiresAtMs);
    if (!valid) return new Response("a valid sbx token is required\n", { status: 401 });
    if (bearer === undefined && fromQuery !== null) {
      url.searchParams.delete(TOKEN_PARAM);
      const secure = url.protocol === "https:" ? "; Secure" : "";
      return new Response(null, {
        status: 302,
        headers: {
          location: url.pathname + url.search,
          "set-cookie": `${cookie}=${token}; Path=/; HttpOnly; SameSite=Lax${secure}`,
        },
      });
    }
    if (bearer !== undefined) headers.delete("authorization");
    const kept = [...cookies].filter(([name]) => !name.startsWith("sbx_"));
    if (kept.length > 0) headers.set("cookie", kept.map(([name, value]) => `${name}=${value}`).join("; "));
    else headers.delete("cookie");
    headers.delete(VERIFIED_USER_DATA);
    if (record.userMetadata !== undefined) headers.set(VERIFIED_USER_DATA, record.userMetadata);
    const body = request.method === "GET" || request.method === "HEAD" ? undefined : request.body;
    return new Request(url, { method: request.method, headers, body, ...(body ? { duplex: "half" } : {}) });
  }

  #server(): ServePort {
    if (this.serve) return this.serve;
    throw new ConnectError(
      "the fake serves tunnels and tokens on real ports: call fake.listen() first (Node)",
      Code.FailedPrecondition,
    );
  }
}

const urlOf = (at: { host: string; port: number }) =>
  `http://${at.host.includes(":") ? `[${at.host}]` : at.host}:${at.port}`;

function parseCookies(header: string | null): Map<string, string> {
  const cookies = new Map<string, string>();
  for (const part of (header ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0) cookies.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return cookies;
}
