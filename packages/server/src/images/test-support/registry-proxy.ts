/**
 * Test support: an HTTP proxy in front of a test registry that counts what it serves and can
 * misbehave on purpose: cut a blob off after some bytes, serve a tampered blob, hold blob
 * answers until released, redirect blob GETs to a "CDN" on another origin, or answer some
 * paths itself (a 429, a schema 1 manifest). And that CDN: blobs read from the registry's
 * storage, noting whether a request came with an Authorization header.
 */
import { createReadStream, existsSync } from "node:fs";
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { join } from "node:path";

export interface ProxiedRequest {
  readonly method: string;
  readonly path: string;
  readonly range: string | undefined;
  readonly authorization: boolean;
  status: number;
  /** Body bytes sent to the client. */
  bytes: number;
}

interface CannedAnswer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string | Buffer;
}

const blobDigestOf = (path: string) => /\/blobs\/(sha256:[a-f0-9]{64})$/.exec(path)?.[1];

export class RegistryProxy {
  readonly requests: ProxiedRequest[] = [];
  readonly #upstream: string;
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;
  #port = 0;
  #cuts = new Map<string, { bytes: number; gone: boolean; stall: boolean }>();
  /** Blobs served with one byte changed: their first, or their last. */
  #tampered = new Map<string, "first" | "last">();
  #held: { digests: Set<string>; until: Promise<void> } | undefined;
  #redirectTo: string | undefined;
  #canned = new Map<string, CannedAnswer>();
  #expire: string | undefined;

  private constructor(upstream: string) {
    this.#upstream = upstream;
  }

  static async start(upstream: string): Promise<RegistryProxy> {
    const proxy = new RegistryProxy(upstream);
    await proxy.listen();
    return proxy;
  }

  get host(): string {
    return `127.0.0.1:${this.#port}`;
  }

  /** GETs of a blob (all blobs without `digest`). */
  blobGets(digest?: string): ProxiedRequest[] {
    return this.requests.filter(
      (r) =>
        r.method === "GET" &&
        blobDigestOf(r.path) !== undefined &&
        (digest === undefined || r.path.endsWith(`/${digest}`)),
    );
  }

  /**
   * The next GET of `digest` ends (the connection closed) after `bytes` body bytes; with
   * `thenGone`, the proxy then stops listening too (the registry went away); with
   * `thenStall`, the connection stays open and nothing more comes (until the proxy closes).
   */
  cutBlobOnce(digest: string, bytes: number, options: { thenGone?: boolean; thenStall?: boolean } = {}): void {
    this.#cuts.set(digest, { bytes, gone: options.thenGone === true, stall: options.thenStall === true });
  }

  /** Every GET of `digest` gets one byte changed: its first (`at: "last"`: its last). */
  tamperBlob(digest: string, options: { at?: "first" | "last" } = {}): void {
    this.#tampered.set(digest, options.at ?? "first");
  }

  /** Answers for these blobs wait until the returned function is called. */
  holdBlobs(digests: readonly string[]): () => void {
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = () => {
        this.#held = undefined;
        resolve();
      };
    });
    this.#held = { digests: new Set(digests), until: held };
    return release;
  }

  /**
   * The next blob GET is answered 401 with the registry's own challenge (as when a token
   * expires mid-pull): a client must get a new token and ask again.
   */
  expireTokenOnce(challenge: string): void {
    this.#expire = challenge;
  }

  /** Blob GETs are answered 307 to `${origin}/cdn/<digest>`. */
  redirectBlobsTo(origin: string | undefined): void {
    this.#redirectTo = origin;
  }

  /** Requests for `path` get this answer instead of the registry's. */
  answer(path: string, answer: CannedAnswer | undefined): void {
    if (answer === undefined) this.#canned.delete(path);
    else this.#canned.set(path, answer);
  }

  async listen(): Promise<void> {
    const server = createServer((req, res) => void this.#handle(req, res));
    server.on("connection", (socket) => {
      this.#sockets.add(socket);
      socket.on("close", () => this.#sockets.delete(socket));
    });
    await new Promise<void>((resolve) => server.listen(this.#port, "127.0.0.1", resolve));
    this.#port = (server.address() as { port: number }).port;
    this.#server = server;
  }

  #goneExcept(keep: Socket | null): void {
    const server = this.#server;
    this.#server = undefined;
    server?.close();
    for (const socket of this.#sockets) if (socket !== keep) socket.destroy();
  }

  /** Stops listening and drops every connection (as a registry that went away). */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const socket of this.#sockets) socket.destroy();
    if (server) await new Promise((resolve) => server.close(resolve));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = req.url ?? "/";
    const record: ProxiedRequest = {
      method: req.method ?? "GET",
      path,
      range: req.headers.range,
      authorization: req.headers.authorization !== undefined,
      status: 0,
      bytes: 0,
    };
    this.requests.push(record);
    const canned = this.#canned.get(path);
    if (canned !== undefined) {
      record.status = canned.status;
      res.writeHead(canned.status, canned.headers).end(canned.body);
      return;
    }
    const digest = blobDigestOf(path);
    if (digest !== undefined && this.#expire !== undefined && req.method === "GET") {
      record.status = 401;
      res.writeHead(401, { "www-authenticate": this.#expire, "content-type": "application/json" });
      res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "token expired" }] }));
      this.#expire = undefined;
      return;
    }
    if (digest !== undefined && this.#held?.digests.has(digest)) await this.#held.until;
    if (digest !== undefined && this.#redirectTo !== undefined && req.method === "GET") {
      record.status = 307;
      res.writeHead(307, { location: `${this.#redirectTo}/cdn/${digest}` }).end();
      return;
    }
    const headers = { ...req.headers, host: this.#upstream };
    const upstream = request(`http://${this.#upstream}${path}`, { method: req.method, headers }, (answer) => {
      record.status = answer.statusCode ?? 0;
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      const cut = digest !== undefined ? this.#cuts.get(digest) : undefined;
      if (cut !== undefined && digest !== undefined) this.#cuts.delete(digest);
      let tamper = digest !== undefined ? this.#tampered.get(digest) : undefined;
      const length = Number(answer.headers["content-length"]);
      answer.on("data", (chunk: Buffer) => {
        let data = chunk;
        const at = tamper === "first" ? 0 : tamper === "last" ? length - 1 - record.bytes : -1;
        if (at >= 0 && at < data.length) {
          data = Buffer.from(data);
          data[at] = (data[at] as number) ^ 0xff;
          tamper = undefined;
        }
        if (cut !== undefined && record.bytes + data.length >= cut.bytes) {
          const part = data.subarray(0, cut.bytes - record.bytes);
          record.bytes += part.length;
          answer.destroy();
          const socket = res.socket;
          // Gone: no new connection is accepted and idle ones are dropped before this one ends
          // (after its bytes are out), so a retry finds nobody.
          if (cut.gone) this.#goneExcept(socket);
          res.write(part, () => (cut.stall ? undefined : socket?.end()));
          return;
        }
        record.bytes += data.length;
        res.write(data);
      });
      answer.on("end", () => res.end());
    });
    upstream.on("error", () => res.socket?.destroy());
    req.pipe(upstream);
  }
}

/** A "CDN" serving the registry's blobs from its storage at /cdn/<digest>. */
export class TestCdn {
  readonly requests: { path: string; authorization: boolean }[] = [];
  readonly #server: Server;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(registryStorage: string): Promise<TestCdn> {
    let cdn: TestCdn | undefined;
    const server = createServer((req, res) => {
      cdn?.requests.push({ path: req.url ?? "", authorization: req.headers.authorization !== undefined });
      const digest = /^\/cdn\/sha256:([a-f0-9]{64})$/.exec(req.url ?? "")?.[1];
      const file =
        digest && join(registryStorage, "docker/registry/v2/blobs/sha256", digest.slice(0, 2), digest, "data");
      if (!file || !existsSync(file)) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { "content-type": "application/octet-stream" });
      createReadStream(file).pipe(res);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    cdn = new TestCdn(server);
    return cdn;
  }

  get origin(): string {
    return `http://127.0.0.1:${(this.#server.address() as { port: number }).port}`;
  }

  async close(): Promise<void> {
    await new Promise((resolve) => this.#server.close(resolve));
  }
}
