/**
 * Ingress tokens: what connect tokens and service URLs carry. A token is a JWT signed with
 * HS256 under one key per server (jose: well-kept, constant-time checks, runs in browsers too,
 * so this file stays browser-safe). Its claims bind it to one sandbox (`sub`), one port
 * (`sbx_port`) and one audience (`aud`: "connect" or "service"), with the connect token's user
 * metadata (`sbx_user`, JSON) and its id (`jti`). A token with a lifetime has `exp`; one
 * without (`expiresInMs: 0`) lives while its sandbox runs: it has no `exp`, and is revoked,
 * with every other token of its sandbox, when the sandbox ends (`revokeSandbox`).
 */
import { errors, jwtVerify, SignJWT } from "jose";
import { MAX_USER_METADATA_BYTES } from "./limits.js";

export type TokenAudience = "connect" | "service";

/** Bytes of an HS256 key: as many as the hash's output. */
export const TOKEN_KEY_BYTES = 32;
const ISSUER = "sbx";
const ALGORITHM = "HS256";

export interface TokenGrant {
  readonly sandboxId: string;
  readonly port: number;
  readonly audience: TokenAudience;
  /** JSON given to the app as X-Verified-User-Data (connect tokens); undefined: none. */
  readonly userMetadata?: string | undefined;
  /** 0: while the sandbox runs. */
  readonly expiresInMs: number;
}

export interface IssuedToken {
  readonly token: string;
  /** Milliseconds since the epoch (a whole second: JWT times are seconds); 0: while the sandbox runs. */
  readonly expiresAtMs: number;
}

/** What a verified token grants. */
export interface VerifiedToken {
  readonly sandboxId: string;
  readonly port: number;
  readonly audience: TokenAudience;
  readonly userMetadata: string | undefined;
  readonly tokenId: string;
}

export type TokenCheck =
  | { readonly ok: true; readonly token: VerifiedToken }
  | { readonly ok: false; readonly reason: string };

export interface TokensOptions {
  /** The clock, in ms since the epoch (tests move it). */
  readonly now?: () => number;
}

/** A new random key (for the fake, and for a server's first start). */
export function randomTokenKey(): Uint8Array {
  const key = new Uint8Array(TOKEN_KEY_BYTES);
  crypto.getRandomValues(key);
  return key;
}

export class IngressTokens {
  readonly #key: Uint8Array;
  readonly #now: () => number;
  /** Token ids issued for each sandbox by this process (revoked when it ends). */
  readonly #issued = new Map<string, Map<string, number>>();
  /** Revoked token ids, each kept until it expires (0: for good). */
  readonly #revoked = new Map<string, number>();

  constructor(key: Uint8Array, options: TokensOptions = {}) {
    if (!(key instanceof Uint8Array) || key.byteLength < TOKEN_KEY_BYTES) {
      throw new TypeError(`an ingress token key is at least ${TOKEN_KEY_BYTES} bytes`);
    }
    this.#key = key.slice();
    this.#now = options.now ?? Date.now;
  }

  /** A signed token for `grant`; TypeError for a grant the engine should never have let through. */
  async issue(grant: TokenGrant): Promise<IssuedToken> {
    const problem = grantProblem(grant);
    if (problem) throw new TypeError(`cannot issue an ingress token: ${problem}`);
    const nowMs = this.#now();
    const tokenId = crypto.randomUUID();
    const claims: Record<string, unknown> = { sbx_port: grant.port };
    if (grant.userMetadata !== undefined) claims.sbx_user = grant.userMetadata;
    const jwt = new SignJWT(claims)
      .setProtectedHeader({ alg: ALGORITHM, typ: "JWT" })
      .setIssuer(ISSUER)
      .setSubject(grant.sandboxId)
      .setAudience(grant.audience)
      .setIssuedAt(Math.floor(nowMs / 1000))
      .setJti(tokenId);
    // Rounded up to the second: a token may outlive its request by under a second, never fall short.
    const expSeconds = grant.expiresInMs > 0 ? Math.ceil((nowMs + grant.expiresInMs) / 1000) : 0;
    if (expSeconds > 0) jwt.setExpirationTime(expSeconds);
    const token = await jwt.sign(this.#key);
    const ids = this.#issued.get(grant.sandboxId) ?? new Map<string, number>();
    this.#issued.set(grant.sandboxId, ids);
    ids.set(tokenId, expSeconds * 1000);
    return { token, expiresAtMs: expSeconds * 1000 };
  }

  /**
   * Checks `token` for `port` of `sandboxId` (and one of `audiences`): its signature (HS256
   * only; `none` and every other algorithm refused), issuer, audience, expiry, sandbox, port
   * and revocation.
   */
  async verify(
    token: string,
    expected: { sandboxId: string; port: number; audiences?: readonly TokenAudience[] },
  ): Promise<TokenCheck> {
    if (typeof token !== "string" || token.length === 0 || token.length > MAX_TOKEN_CHARS) {
      return { ok: false, reason: "no token" };
    }
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, this.#key, {
        algorithms: [ALGORITHM],
        issuer: ISSUER,
        audience: [...(expected.audiences ?? ["connect", "service"])],
        currentDate: new Date(this.#now()),
        requiredClaims: ["sub", "aud", "jti", "iat"],
      }));
    } catch (error) {
      if (error instanceof errors.JWTExpired) return { ok: false, reason: "the token has expired" };
      if (error instanceof errors.JWTClaimValidationFailed)
        return { ok: false, reason: `the token's ${error.claim} does not match` };
      return { ok: false, reason: "the token is not valid" };
    }
    const { sub, aud, jti, sbx_port: port, sbx_user: userMetadata } = payload;
    const audience = Array.isArray(aud) ? (aud.length === 1 ? aud[0] : undefined) : aud;
    if (sub !== expected.sandboxId) return { ok: false, reason: "the token is for another sandbox" };
    if (port !== expected.port) return { ok: false, reason: "the token is for another port" };
    if (audience !== "connect" && audience !== "service")
      return { ok: false, reason: "the token's aud does not match" };
    if (typeof jti !== "string") return { ok: false, reason: "the token is not valid" };
    if (userMetadata !== undefined && typeof userMetadata !== "string")
      return { ok: false, reason: "the token is not valid" };
    if (this.#revoked.has(jti)) return { ok: false, reason: "the token was revoked: its sandbox has ended" };
    return { ok: true, token: { sandboxId: sub, port, audience, userMetadata, tokenId: jti } };
  }

  /** The sandbox has ended: every token issued for it stops working. */
  revokeSandbox(sandboxId: string): void {
    const nowMs = this.#now();
    for (const [id, until] of this.#revoked) if (until !== 0 && until <= nowMs) this.#revoked.delete(id);
    const ids = this.#issued.get(sandboxId);
    if (!ids) return;
    this.#issued.delete(sandboxId);
    for (const [id, expiresAtMs] of ids)
      if (expiresAtMs === 0 || expiresAtMs > nowMs) this.#revoked.set(id, expiresAtMs);
  }
}

/** Longer than any token this module signs (4 KiB of metadata, base64url'd, plus the rest). */
const MAX_TOKEN_CHARS = 8192;

function grantProblem(grant: TokenGrant): string | undefined {
  if (typeof grant.sandboxId !== "string" || grant.sandboxId.length === 0) return "no sandbox id";
  if (!Number.isInteger(grant.port) || grant.port < 1 || grant.port > 65_535) return `invalid port ${grant.port}`;
  if (grant.audience !== "connect" && grant.audience !== "service") return `unknown audience ${String(grant.audience)}`;
  if (!Number.isSafeInteger(grant.expiresInMs) || grant.expiresInMs < 0) return `invalid lifetime ${grant.expiresInMs}`;
  const metadata = grant.userMetadata;
  if (metadata !== undefined) {
    if (typeof metadata !== "string") return "user metadata must be a JSON string";
    if (new TextEncoder().encode(metadata).byteLength > MAX_USER_METADATA_BYTES) {
      return `user metadata is longer than ${MAX_USER_METADATA_BYTES} bytes`;
    }
    try {
      JSON.parse(metadata);
    } catch {
      return "user metadata must be JSON";
    }
  }
  return undefined;
}
