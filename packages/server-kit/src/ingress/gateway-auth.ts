/**
 * The token gateway's decision for one request to a sandbox port (browser-safe; the Node
 * listener that acts on it is gateway.ts). A token comes as `Authorization: Bearer`, as the
 * `sbx_token` query parameter or as the port's cookie; the first of them that verifies wins.
 * Without one: 401. A query token on a GET or HEAD is answered with a cookie and a redirect to
 * the same URL without it. Otherwise the request goes on with sbx's credentials taken out
 * (the Authorization header when it carried our token, every sbx token cookie, the query
 * parameter) and any caller's `X-Verified-User-Data` replaced by the connect token's metadata.
 */
import type { IngressTokens, VerifiedToken } from "./tokens.js";

export const TOKEN_PARAM = "sbx_token";
export const VERIFIED_USER_DATA = "x-verified-user-data";
/** The cookie a port's token is kept in (cookies do not tell ports apart: the name does). */
export const tokenCookieName = (sandboxId: string, port: number) => `sbx_${sandboxId}_${port}`;
/** Names of sbx token cookies (of any sandbox and port), never passed on to an app. */
const TOKEN_COOKIE = /^sbx_.+_\d+$/;

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
  | { readonly kind: "reject"; readonly status: 401; readonly body: string }
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
  if (!tokens) return { kind: "forward", url: forwardUrl, headers, token: undefined };

  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(single(head.headers.authorization) ?? "")?.[1];
  const cookieName = tokenCookieName(target.sandboxId, target.port);
  const fromCookie = cookies.find(([name]) => name === cookieName)?.[1];
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
      // A session cookie: the token inside it expires (or is revoked) on its own.
      const setCookie = `${cookieName}=${token}; Path=/; HttpOnly; SameSite=Lax${head.secure ? "; Secure" : ""}`;
      return { kind: "redirect", location: forwardUrl, setCookie };
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
