/**
 * Node listeners for the fake's ingress, made by `listen()`: one per sandbox port and kind
 * (an open tunnel, or the token gateway), on the fake's host, each turning HTTP/1.1 requests
 * into fetch `Request`s for `FakeIngress.handle` and its `Response`s back. They close with
 * their sandbox and with the fake.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import type { FakeIngress, IngressKind } from "./fake-ingress.js";

export class FakePortListeners {
  readonly #servers = new Map<string, Promise<{ server: Server; host: string; port: number }>>();

  constructor(
    readonly ingress: FakeIngress,
    readonly host: string,
  ) {
    ingress.serve = async (kind, sandboxId, port) => {
      const key = `${kind} ${sandboxId} ${port}`;
      let made = this.#servers.get(key);
      if (!made) {
        made = this.#listen(kind, sandboxId, port);
        this.#servers.set(key, made);
      }
      const { host, port: at } = await made;
      return { host, port: at };
    };
    ingress.onSandboxEnded = (sandboxId) => {
      for (const [key, made] of this.#servers) {
        if (key.split(" ")[1] !== sandboxId) continue;
        this.#servers.delete(key);
        void made.then(({ server }) => close(server));
      }
    };
  }

  async close(): Promise<void> {
    this.ingress.serve = undefined;
    this.ingress.onSandboxEnded = undefined;
    const made = [...this.#servers.values()];
    this.#servers.clear();
    await Promise.all(
      made.map((m) =>
        m.then(
          ({ server }) => close(server),
          () => {},
        ),
      ),
    );
  }

  async #listen(kind: IngressKind, sandboxId: string, port: number) {
    const server = createServer((req, res) => {
      void this.#answer(kind, sandboxId, port, req, res);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, this.host, resolve);
    });
    server.unref();
    return { server, host: this.host, port: (server.address() as AddressInfo).port };
  }

  async #answer(kind: IngressKind, sandboxId: string, port: number, req: IncomingMessage, res: ServerResponse) {
    try {
      const url = new URL(req.url ?? "/", `http://${req.headers.host ?? `${this.host}`}`);
      const headers = new Headers();
      for (const [name, value] of Object.entries(req.headers)) {
        if (value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
      }
      const hasBody = req.method !== "GET" && req.method !== "HEAD";
      const request = new Request(url, {
        method: req.method ?? "GET",
        headers,
        ...(hasBody ? { body: Readable.toWeb(req) as ReadableStream<Uint8Array>, duplex: "half" } : {}),
      });
      const response = await this.ingress.handle(kind, sandboxId, port, request);
      const out: Record<string, string | string[]> = {};
      response.headers.forEach((value, name) => {
        if (name !== "set-cookie") out[name] = value;
      });
      const cookies = response.headers.getSetCookie();
      if (cookies.length > 0) out["set-cookie"] = cookies;
      res.writeHead(response.status, out);
      if (response.body) {
        const reader = response.body.getReader();
        for (let next = await reader.read(); !next.done; next = await reader.read()) res.write(next.value);
      }
      res.end();
    } catch (error) {
      if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
      res.end(`the port handler failed: ${(error as Error).message}\n`);
    }
  }
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
