/**
 * A client of one repository of an OCI distribution (v2) registry, for one pull: manifests and
 * blobs over Node's fetch, bearer-token and basic auth from the registry's challenge, redirects
 * followed by hand (a blob is often served from a CDN: the Authorization header is never sent
 * to another host, nor anything over plain HTTP after HTTPS), and every failure turned into a
 * store error kind that names the registry. Plain HTTP only for loopback registries and those
 * the server is told are insecure.
 *
 * Where a registry sends the store (a redirect, a token realm) is hostile too: plain HTTP only
 * to loopback hosts and insecure registries (not to a metadata service at 169.254.169.254, nor
 * to any host on the network), and this host (loopback, 0.0.0.0) only when the registry is on
 * it (a registry elsewhere does not get to reach the host's local services).
 */
import { DOCKER_HUB, DOCKER_HUB_API_HOST, isLoopbackRegistry } from "@sbx/proto";
import type { RegistryCredentials } from "@sbx/server-kit";
import { MANIFEST_ACCEPT } from "@sbx/server-kit/images";
import { basicAuthorization, type Challenge, parseChallenges, tokenFromAnswer, tokenUrl } from "./registry-auth.js";
import { ImageStoreError, quoted, storeError } from "./store-errors.js";

export interface RegistryClientOptions {
  /** For this client (one pull) only. */
  readonly credentials?: RegistryCredentials | undefined;
  /** Registries ("host:port") spoken to over plain HTTP although not on loopback. */
  readonly insecureRegistries?: readonly string[] | undefined;
  readonly signal?: AbortSignal | undefined;
  readonly userAgent?: string | undefined;
}

export interface FetchedManifest {
  readonly bytes: Buffer;
  readonly contentType: string | undefined;
  /** The Docker-Content-Digest header, when the registry sent one. */
  readonly headerDigest: string | undefined;
}

export interface BlobResponse {
  /** The offset the body starts at: the one asked for (a resumed download), or 0. */
  readonly start: number;
  readonly body: AsyncIterable<Uint8Array>;
}

const MAX_REDIRECTS = 10;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
/** The most of an error body read (to name the registry's error code). */
const MAX_ERROR_BODY = 64 * 1024;

export class RegistryClient {
  readonly #registry: string;
  readonly #repository: string;
  readonly #base: URL;
  readonly #options: RegistryClientOptions;
  /** The Authorization header value that worked (or the latest challenge's answer). */
  #authorization: string | undefined;
  #authenticating: Promise<string> | undefined;

  constructor(registry: string, repository: string, options: RegistryClientOptions = {}) {
    this.#registry = registry;
    this.#repository = repository;
    this.#options = options;
    const host = registry === DOCKER_HUB ? DOCKER_HUB_API_HOST : registry;
    this.#base = new URL(`${this.#plainHttpAllowed(registry) ? "http" : "https"}://${host}/v2/`);
  }

  /** Where the registry's API is: "https://registry-1.docker.io/v2/", "http://127.0.0.1:5000/v2/". */
  get apiBase(): string {
    return this.#base.href;
  }

  /** What this client names in messages: "127.0.0.1:5000/library/app". */
  get name(): string {
    return `${this.#registry}/${this.#repository}`;
  }

  #plainHttpAllowed(registry: string): boolean {
    return isLoopbackRegistry(registry) || (this.#options.insecureRegistries ?? []).includes(registry);
  }

  /**
   * Why the store may not go to `url` where the registry sends it, if it may not. Plain HTTP
   * goes to loopback hosts, insecure registries, and the host of a registry spoken to over
   * HTTP (its token server on another port).
   */
  #refusal(url: URL): string | undefined {
    const sameInsecureHost = url.hostname === this.#base.hostname && this.#base.protocol === "http:";
    if (url.protocol === "http:" && !this.#plainHttpAllowed(url.host) && !sameInsecureHost) {
      return `plain HTTP (${url.origin}), which the store speaks only to loopback hosts and insecure registries`;
    }
    if (isThisHost(url.hostname) && url.host !== this.#base.host && !isLoopbackRegistry(this.#registry)) {
      return `this host (${url.origin}), which only a registry on loopback may name`;
    }
    return undefined;
  }

  /** GET a manifest or index by tag or digest. */
  async getManifest(reference: string, maxBytes: number): Promise<FetchedManifest> {
    const url = new URL(`${this.#repository}/manifests/${reference}`, this.#base);
    const what = () => (reference.includes(":") ? `manifest ${reference}` : `tag ${reference}`);
    const response = await this.#request(url, { accept: MANIFEST_ACCEPT }, what);
    const bytes = await this.#readAll(response, maxBytes, `the manifest ${reference} of ${this.name}`);
    return {
      bytes,
      contentType: response.headers.get("content-type") ?? undefined,
      headerDigest: response.headers.get("docker-content-digest") ?? undefined,
    };
  }

  /** GET a small blob (a config) whole; the caller checks its digest. */
  async getSmallBlob(digest: string, maxBytes: number): Promise<Buffer> {
    const { body } = await this.getBlob(digest, 0);
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of body) {
      size += chunk.byteLength;
      if (size > maxBytes) throw storeError("invalid", `the blob ${digest} of ${this.name} is over ${maxBytes} bytes`);
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  }

  /**
   * GET a blob from `offset` on (a Range request when resuming). `signal`: this download's own
   * (a download shared by several pulls outlives the pull that started it).
   */
  async getBlob(digest: string, offset: number, signal = this.#options.signal): Promise<BlobResponse> {
    const url = new URL(`${this.#repository}/blobs/${digest}`, this.#base);
    const range = offset > 0 ? `bytes=${offset}-` : undefined;
    let response = await this.#request(url, { range }, () => `blob ${digest}`, signal);
    let start = 0;
    if (response.status === 206) {
      const match = /^bytes (\d+)-\d+\/(\d+|\*)$/.exec(response.headers.get("content-range") ?? "");
      start = match ? Number(match[1]) : -1;
      if (start !== offset) {
        // Not the range asked for: start again from the beginning.
        await response.body?.cancel();
        response = await this.#request(url, {}, () => `blob ${digest}`, signal);
        start = 0;
      }
    }
    return { start, body: this.#bodyOf(response, signal) };
  }

  /** A response body whose failures (a reset, a registry gone mid-transfer) are "connection" errors. */
  async *#bodyOf(response: Response, signal = this.#options.signal): AsyncGenerator<Uint8Array, void, undefined> {
    if (response.body === null) return;
    try {
      for await (const chunk of response.body) yield chunk;
    } catch (error) {
      throw this.#connectionError(error, signal);
    }
  }

  async #readAll(response: Response, maxBytes: number, what: string): Promise<Buffer> {
    const length = Number(response.headers.get("content-length") ?? Number.NaN);
    if (length > maxBytes) {
      await response.body?.cancel();
      throw storeError("invalid", `${what} is ${length} bytes, over the ${maxBytes} a manifest may have`);
    }
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of this.#bodyOf(response)) {
      size += chunk.byteLength;
      if (size > maxBytes) throw storeError("invalid", `${what} is over the ${maxBytes} bytes a manifest may have`);
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  }

  /**
   * A GET answered 2xx, after authenticating once if the registry challenges (again when a
   * token expires mid-pull); anything else becomes a store error naming `what()`.
   */
  async #request(
    url: URL,
    want: { accept?: string; range?: string | undefined },
    what: () => string,
    signal = this.#options.signal,
  ): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = {};
      if (want.accept !== undefined) headers.accept = want.accept;
      if (want.range !== undefined) headers.range = want.range;
      if (this.#options.userAgent !== undefined) headers["user-agent"] = this.#options.userAgent;
      const sentAuthorization = this.#authorization;
      if (sentAuthorization !== undefined) headers.authorization = sentAuthorization;
      const response = await this.#follow(url, headers, signal);
      if (response.status === 401 && attempt === 0) {
        const challenges = parseChallenges(response.headers.get("www-authenticate") ?? "");
        await response.body?.cancel();
        await this.#authenticate(challenges, sentAuthorization, signal);
        continue;
      }
      if (response.ok) return response;
      throw await this.#statusError(response, what(), sentAuthorization !== undefined);
    }
  }

  /** Answers the registry's challenge (one token request shared by concurrent requests). */
  async #authenticate(
    challenges: Challenge[],
    failed: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    if (this.#authorization !== failed) return; // another request already renewed it
    if (this.#authenticating === undefined) {
      this.#authenticating = this.#answer(challenges, signal).finally(() => {
        this.#authenticating = undefined;
      });
    }
    this.#authorization = await this.#authenticating;
  }

  async #answer(challenges: Challenge[], signal: AbortSignal | undefined): Promise<string> {
    const bearer = challenges.find((c) => c.scheme === "bearer");
    const basic = challenges.find((c) => c.scheme === "basic");
    const credentials = this.#options.credentials;
    if (bearer !== undefined) return `Bearer ${await this.#fetchToken(bearer, signal)}`;
    if (basic !== undefined) {
      if (credentials === undefined) {
        throw storeError("authentication", `registry ${this.#registry} wants credentials for ${this.#repository}`);
      }
      return basicAuthorization(credentials);
    }
    throw storeError(
      "authentication",
      `registry ${this.#registry} asked for authentication without a challenge the store knows (bearer or basic)`,
    );
  }

  async #fetchToken(challenge: Challenge, signal: AbortSignal | undefined): Promise<string> {
    let url: URL;
    try {
      url = tokenUrl(challenge, `repository:${this.#repository}:pull`);
    } catch (error) {
      throw storeError("invalid", `registry ${this.#registry}: ${(error as Error).message}`, error);
    }
    const refusal = this.#refusal(url);
    if (refusal !== undefined) {
      throw storeError("authentication", `registry ${this.#registry} names a token realm on ${refusal}: refused`);
    }
    const credentials = this.#options.credentials;
    const headers: Record<string, string> = {};
    if (this.#options.userAgent !== undefined) headers["user-agent"] = this.#options.userAgent;
    if (credentials !== undefined) headers.authorization = basicAuthorization(credentials);
    const response = await this.#follow(url, headers, signal);
    if (response.status === 401 || response.status === 403) {
      await response.body?.cancel();
      throw storeError(
        "authentication",
        credentials === undefined
          ? `registry ${this.#registry} wants credentials for ${this.#repository}`
          : `registry ${this.#registry} refused the credentials for ${this.#repository}`,
      );
    }
    if (!response.ok) throw await this.#statusError(response, "a token", credentials !== undefined);
    let body: unknown;
    try {
      body = JSON.parse((await this.#readAll(response, MAX_ERROR_BODY * 16, "the token answer")).toString("utf8"));
    } catch (error) {
      if (error instanceof ImageStoreError) throw error;
      throw storeError("invalid", `registry ${this.#registry}'s token answer is not JSON`, error);
    }
    const token = tokenFromAnswer(body);
    if (token === undefined) throw storeError("invalid", `registry ${this.#registry}'s token answer has no token`);
    return token;
  }

  /**
   * fetch with redirects followed by hand: the Authorization header goes only to the origin
   * first asked (a presigned CDN URL must not get the registry's token), and a redirect the
   * store may not follow ({@link #refusal}: to plain HTTP, to this host) is refused.
   */
  async #follow(url: URL, headers: Record<string, string>, signal = this.#options.signal): Promise<Response> {
    const origin = url.origin;
    let current = url;
    const sent = { ...headers };
    for (let hop = 0; ; hop++) {
      let response: Response;
      try {
        response = await fetch(current, { headers: sent, redirect: "manual", signal: signal ?? null });
      } catch (error) {
        throw this.#connectionError(error, signal);
      }
      if (!REDIRECTS.has(response.status)) return response;
      await response.body?.cancel();
      const location = response.headers.get("location");
      if (location === null || hop >= MAX_REDIRECTS) {
        throw storeError(
          "connection",
          `registry ${this.#registry} ${location === null ? "redirected without a Location" : `redirected more than ${MAX_REDIRECTS} times`}`,
        );
      }
      const next = new URL(location, current);
      if (next.protocol !== "https:" && next.protocol !== "http:") {
        throw storeError("connection", `registry ${this.#registry} redirected to a ${next.protocol} URL`);
      }
      const refusal = this.#refusal(next);
      if (refusal !== undefined) {
        throw storeError("connection", `registry ${this.#registry} redirected to ${refusal}: refused`);
      }
      if (next.origin !== origin) delete sent.authorization;
      current = next;
    }
  }

  #connectionError(error: unknown, signal = this.#options.signal): unknown {
    if (error instanceof ImageStoreError) return error;
    if (signal?.aborted) return signal.reason;
    const cause = (error as { cause?: { code?: string; message?: string } } | undefined)?.cause;
    const why = cause?.code ?? cause?.message ?? (error as Error | undefined)?.message ?? String(error);
    return storeError("connection", `could not reach registry ${this.#registry} (${this.#base.origin}): ${why}`, error);
  }

  async #statusError(response: Response, what: string, authenticated: boolean): Promise<ImageStoreError> {
    const errors = await this.#errorCodes(response);
    const codes = errors.map((e) => e.code);
    const detail = errors.length > 0 ? `: ${errors.map((e) => `${e.code} ${quoted(e.message)}`).join(", ")}` : "";
    const status = response.status;
    if (status === 404 || codes.includes("NAME_UNKNOWN") || codes.includes("MANIFEST_UNKNOWN")) {
      if (codes.includes("NAME_UNKNOWN")) return storeError("not-found", `repository ${this.name} not found`);
      return storeError("not-found", `${what} not found in ${this.name}`);
    }
    if (status === 401 || status === 403) {
      return storeError(
        "authentication",
        this.#options.credentials !== undefined
          ? `registry ${this.#registry} refused the credentials for ${this.#repository} (HTTP ${status}${detail})`
          : authenticated
            ? `registry ${this.#registry} refused access to ${this.#repository} without credentials: it does not exist or needs them (HTTP ${status}${detail})`
            : `registry ${this.#registry} wants credentials for ${this.#repository} (HTTP ${status}${detail})`,
      );
    }
    if (status === 429) {
      const retryAfter = response.headers.get("retry-after");
      return storeError(
        "quota",
        `registry ${this.#registry} refuses more pulls for now (HTTP 429${detail})${retryAfter !== null ? `; retry after ${retryAfter} s` : ""}${this.#registry === DOCKER_HUB && this.#options.credentials === undefined ? "; Docker Hub allows more pulls with credentials" : ""}`,
      );
    }
    return storeError(
      "connection",
      `registry ${this.#registry} answered HTTP ${status} for ${what} of ${this.name}${detail}`,
    );
  }

  /** The registry's error codes in an error body ({"errors":[{"code","message"}]}), if any. */
  async #errorCodes(response: Response): Promise<{ code: string; message: string }[]> {
    try {
      const text = (await this.#readAll(response, MAX_ERROR_BODY, "an error answer")).toString("utf8");
      const body = JSON.parse(text) as { errors?: { code?: unknown; message?: unknown }[] };
      return (body.errors ?? [])
        .filter((e) => typeof e.code === "string")
        .map((e) => ({
          code: e.code as string,
          message: typeof e.message === "string" ? e.message.slice(0, 200) : "",
        }));
    } catch {
      return [];
    }
  }
}

/**
 * Whether a URL's hostname (as URL normalizes it: "127.1" is "127.0.0.1", "[::ffff:127.0.0.1]"
 * is "[::ffff:7f00:1]") names this host: loopback, or the unspecified address (connecting to
 * 0.0.0.0 reaches this host's listeners).
 */
export function isThisHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/\.$/, "");
  if (host === "localhost" || host.endsWith(".localhost")) return true;
  if (/^(127|0)\.[0-9]+\.[0-9]+\.[0-9]+$/.test(host)) return true;
  if (!host.startsWith("[")) return false;
  const v6 = host.slice(1, -1);
  if (v6 === "::1" || v6 === "::") return true;
  const mapped = /^::ffff:([0-9a-f]{1,4}):[0-9a-f]{1,4}$/.exec(v6);
  const high = mapped === null ? undefined : Number.parseInt(mapped[1] as string, 16) >> 8;
  return high === 127 || high === 0;
}
