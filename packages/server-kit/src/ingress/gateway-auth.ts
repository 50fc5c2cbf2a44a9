/**
 * The token gateway's decision for one request to a sandbox port (browser-safe; the Node
 * listener that acts on it is gateway.ts). A token comes as `Authorization: Bearer`, as the
 * `sbx_token` query parameter or as the port's cookie; the first of them that verifies wins.
 * Without one: 401. A query token on a GET or HEAD is answered with a cookie and a redirect to
 * the same URL without it. Otherwise the request goes on with sbx's credentials taken out
 * (the Authorization header when it carried our token, every sbx token cookie, the query
 * parameter) and any caller's `X-Verified-User-Data` replaced by the connect token's metadata.
 * The cookie is not taken for an upgrade (WebSocket) from a page of another origin: browsers
 * send a host's cookies along with cross-origin WebSockets, so any page could otherwise open
 * one in its visitor's name (cross-site WebSocket hijacking). Nor for a request that may change
 * things (not GET, HEAD or OPTIONS) that a browser says comes from another origin (`Origin`, or
 * `Sec-Fetch-Site` other than same-origin or none): 403, since a sibling sandbox's page under one
 * tunnel domain is the same site, and SameSite=Lax lets its forms post with the cookie (CSRF).
 * The app is told the host the request was routed by: an absolute request target's authority
 * or HTTP/2's :authority, over any Host header the caller sent along.
 */
import type { IngressTokens, VerifiedToken } from "./tokens.js";

export const TOKEN_PARAM = "sbx_token";
export const VERIFIED_USER_DATA = "x-verified-user-data";
/**
 * The cookie a port's token is kept in (cookies do not tell ports apart: the name does). Over
 * https it has the `__Host-` prefix: browsers then keep it to the one host that set it, so a
 * page on another name under the same domain (another sandbox's, under a tunnel domain) can
 * neither replace it nor plant its own (RFC 6265bis §4.1.3.2).
 */
export const tokenCookieName = (sandboxId: string, port: number, https = false) =>
  `${https ? "__Host-" : ""}sbx_${sandboxId}_${port}`;
/** Names of sbx token cookies (of any sandbox and port), never passed on to an app. */
const TOKEN_COOKIE = /^(__Host-)?sbx_.+_\d+$/;

/**
 * Fields that frame a request or its connection, refused (400) when their name is spelt with '_'
 * for '-' (Transfer_Encoding, Content_Length, Keep_Alive): CGI-style servers (Puma, Unicorn,
 * anything on Rack or WSGI's environ) read such a name as the field itself, so a request framed
 * one way here would reach the app framed another (smuggling). Other names with '_' pass
 * (X_Verified_User_Data is taken out). The relay (agent/relay_http.go) refuses the same names.
 */
const UNDERSCORE_REFUSED = new Set(["content-length", "transfer-encoding", "keep-alive"]);

/** The first field name of `headers` that UNDERSCORE_REFUSED refuses, if any. */
export function underscoredFramingField(headers: HeaderRecord): string | undefined {
  return Object.keys(headers).find(
    (name) => name.includes("_") && UNDERSCORE_REFUSED.has(name.toLowerCase().replaceAll("_", "-")),
  );
}

/** Request headers as node:http gives them (names in lower case). */
export type HeaderRecord = Record<string, string | string[] | undefined>;

export interface GatewayRequestHead {
  readonly method: string;
  /** The request target: path and query. */
  readonly url: string;
  readonly headers: HeaderRecord;
  /** Reached over TLS (the cookie gets `Secure`). */
  readonly secure?: boolean;
  /** An upgrade (WebSocket): a query token is taken as it is, no redirect (a browser's WebSocket cannot send headers). */
  readonly upgrade?: boolean;
}

export type GatewayDecision =
  | { readonly kind: "reject"; readonly status: 401 | 403; readonly body: string }
  | { readonly kind: "redirect"; readonly location: string; readonly setCookie: string }
  | {
      readonly kind: "forward";
      /** The request target without the token parameter. */
      readonly url: string;
      readonly headers: HeaderRecord;
      readonly token: VerifiedToken | undefined;
    };

export interface GatewayTarget {
  readonly sandboxId: string;
  readonly port: number;
  /**
   * Clients reach this target over https although the server may see plain HTTP (a TLS proxy
   * in front of a tunnel domain): the token cookie is `Secure` and `__Host-` prefixed.
   */
  readonly https?: boolean;
}

/** Decides what becomes of `head`, aimed at `target`, given `tokens` (undefined: an open tunnel). */
export async function authorizeRequest(
  head: GatewayRequestHead,
  target: GatewayTarget,
  tokens: IngressTokens | undefined,
): Promise<GatewayDecision> {
  const url = new URL(head.url, "http://gateway.invalid");
  const fromQuery = url.searchParams.get(TOKEN_PARAM);
  url.searchParams.delete(TOKEN_PARAM);
  const forwardUrl = url.pathname + url.search;
  const headers: HeaderRecord = { ...head.headers };
  // Whatever the caller says about the user never reaches the app; only a token's metadata does
  // (nor spelt with underscores: CGI-style servers read X_Verified_User_Data as the same header).
  for (const name of Object.keys(headers)) {
    if (name.toLowerCase().replaceAll("_", "-") === VERIFIED_USER_DATA) delete headers[name];
  }
  const cookies = parseCookies(headers.cookie);
  const kept = cookies.filter(([name]) => !TOKEN_COOKIE.test(name));
  if (kept.length > 0) headers.cookie = kept.map(([name, value]) => `${name}=${value}`).join("; ");
  else delete headers.cookie;
  // HTTP/2's pseudo-headers are its request line: the app gets HTTP/1.1, with :authority as Host;
  // an absolute target's authority is the host too (RFC 9112 §3.2.2: Host is ignored then).
  for (const name of Object.keys(headers)) if (name.startsWith(":")) delete headers[name];
  const routedHost = ABSOLUTE_TARGET.test(head.url) ? url.host : single(head.headers[":authority"]);
  if (routedHost !== undefined) headers.host = routedHost;
  if (!tokens) return { kind: "forward", url: forwardUrl, headers, token: undefined };

  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(single(head.headers.authorization) ?? "")?.[1];
  const secure = head.secure === true || target.https === true;
  const cookieName = tokenCookieName(target.sandboxId, target.port, secure);
  const crossOrigin = head.upgrade === true && !sameOrigin(single(head.headers.origin), single(headers.host));
  const fromCookie = crossOrigin ? undefined : cookies.find(([name]) => name === cookieName)?.[1];
  const candidates: [source: "bearer" | "query" | "cookie", token: string | null | undefined][] = [
    ["bearer", bearer],
    ["query", fromQuery],
    ["cookie", fromCookie],
  ];
  let reason = "a token is required (Authorization: Bearer, ?sbx_token= or its cookie)";
  for (const [source, token] of candidates) {
    if (!token) continue;
    const check = await tokens.verify(token, target);
    if (!check.ok) {
      reason = check.reason;
      continue;
    }
    if (source === "query" && !head.upgrade && (head.method === "GET" || head.method === "HEAD")) {
      // A session cookie: the token inside it expires (or is revoked) on its own. The redirect
      // stays on this host: `//name/…` would be another's.
      const setCookie = `${cookieName}=${token}; Path=/; HttpOnly; SameSite=Lax${secure ? "; Secure" : ""}`;
      return { kind: "redirect", location: `/${forwardUrl.replace(/^[/\\]+/, "")}`, setCookie };
    }
    if (source === "cookie" && !SAFE_METHODS.has(head.method) && fromAnotherOrigin(head.headers, headers.host)) {
      return {
        kind: "reject",
        status: 403,
        body: "403 Forbidden: a request from another origin is not let in by the cookie (send the token with it)\n",
      };
    }
    if (source === "bearer") delete headers.authorization;
    if (check.token.audience === "connect" && check.token.userMetadata !== undefined) {
      headers[VERIFIED_USER_DATA] = headerJson(check.token.userMetadata);
    }
    return { kind: "forward", url: forwardUrl, headers, token: check.token };
  }
  return { kind: "reject", status: 401, body: `401 Unauthorized: ${reason}\n` };
}

/**
 * The metadata as a header value: the same JSON value, on one line and in ASCII (non-ASCII
 * characters as \u escapes), since a header carries neither line breaks nor, safely, UTF-8.
 */
export function headerJson(json: string): string {
  return JSON.stringify(JSON.parse(json)).replace(
    /[\u007f-\uffff]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

const single = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);

/** A request target in absolute form (`http://host/path`), as host-router.ts reads it too. */
const ABSOLUTE_TARGET = /^[a-z][a-z0-9+.-]*:\/\//i;

/** Methods that do not change things (RFC 9110 §9.2.1): a cookie lets them in from any origin. */
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/**
 * True when a browser says a request comes from a page of another origin than the host it was
 * sent to: its `Origin` is another's (or "null"), or its `Sec-Fetch-Site` is neither
 * same-origin nor none (a user's own navigation). A request with neither is not a browser's.
 */
function fromAnotherOrigin(headers: HeaderRecord, host: string | string[] | undefined): boolean {
  const origin = single(headers.origin);
  if (origin !== undefined && !sameOrigin(origin, single(host))) return true;
  const site = single(headers["sec-fetch-site"])?.trim().toLowerCase();
  return site !== undefined && site !== "same-origin" && site !== "none";
}

/**
 * True when a request's `Origin` (if any: non-browser clients send none) is the origin of the
 * host it was sent to. The host's port, when it names one, must be the origin's (explicit or the
 * scheme's default); a proxy may leave the port out of Host, and then the names alone decide.
 */
function sameOrigin(origin: string | undefined, host: string | undefined): boolean {
  if (origin === undefined) return true;
  if (host === undefined) return false;
  let from: URL;
  try {
    from = new URL(origin);
  } catch {
    return false; // "null" (a sandboxed frame, a file) or garbage
  }
  const parts = /^(.+?)\.?(?::([0-9]*))?$/.exec(host.toLowerCase());
  if (!parts) return false;
  const [, name, port] = parts;
  const fromName = from.hostname.toLowerCase().replace(/\.$/, "");
  if (fromName !== name) return false;
  if (port === undefined || port === "") return true;
  const fromPort = from.port || (from.protocol === "https:" ? "443" : from.protocol === "http:" ? "80" : "");
  return fromPort === port;
}

function parseCookies(header: string | string[] | undefined): [string, string][] {
  const cookies: [string, string][] = [];
  for (const line of Array.isArray(header) ? header : header === undefined ? [] : [header]) {
    for (const part of line.split(";")) {
      const eq = part.indexOf("=");
      if (eq > 0) cookies.push([part.slice(0, eq).trim(), part.slice(eq + 1).trim()]);
    }
  }
  return cookies;
}
