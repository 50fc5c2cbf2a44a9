/**
 * `sb.service(port)` (LangSmith's service URLs): a URL to one port of a sandbox through the
 * token gateway, with a short-lived token asked for again before it expires.
 */
import type { EffectRunner } from "./effect-runner.js";
import { createServiceToken, type ServiceToken } from "./network-ops.js";

export interface ServiceOptions {
  /** Each token's lifetime, 1 s to 24 h; default the server's (10 minutes). */
  readonly expiresInMs?: number;
}

/** A token is renewed once within 20% of its life (at most a minute) of expiring. */
const renewAhead = (token: ServiceToken, issuedAtMs: number) =>
  Math.min(60_000, (token.expiresAtMs - issuedAtMs) * 0.2);

export class ServiceUrl {
  #token: ServiceToken;
  #issuedAtMs: number;
  #renewing: Promise<ServiceToken> | undefined;

  /** @internal built by `sb.service` with its first token */
  constructor(
    readonly sandboxId: string,
    readonly port: number,
    readonly options: ServiceOptions,
    readonly runner: EffectRunner,
    first: ServiceToken,
    issuedAtMs: number,
  ) {
    this.#token = first;
    this.#issuedAtMs = issuedAtMs;
  }

  /** The URL; requests need the token (`Authorization: Bearer`), else 401. */
  get url(): string {
    return this.#token.url;
  }

  /** A token valid for a while yet (a new one when the held one is near its end). */
  async token(): Promise<string> {
    if (Date.now() < this.#token.expiresAtMs - renewAhead(this.#token, this.#issuedAtMs)) return this.#token.token;
    this.#renewing ??= (async () => {
      try {
        const issuedAtMs = Date.now();
        const token = await this.runner.run(createServiceToken(this.sandboxId, this.port, this.options.expiresInMs));
        this.#token = token;
        this.#issuedAtMs = issuedAtMs;
        return token;
      } finally {
        this.#renewing = undefined;
      }
    })();
    return (await this.#renewing).token;
  }

  /** `fetch` of `path` (relative to the URL) with the token added. */
  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const token = await this.token();
    const headers = new Headers(init.headers);
    headers.set("authorization", `Bearer ${token}`);
    return fetch(new URL(path, this.url), { ...init, headers });
  }

  /** The URL with a fresh token in its query: a browser opening it gets a cookie instead. */
  async browserUrl(): Promise<string> {
    const url = new URL(this.url);
    url.searchParams.set("sbx_token", await this.token());
    return url.toString();
  }
}
