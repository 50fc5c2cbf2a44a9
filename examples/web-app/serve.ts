/**
 * A static file server for the built page (`node serve.ts [port] [dir]`, default 8080 and
 * dist/). The page is served from its own origin; the sbx server is a different one and
 * answers the page's CORS preflights.
 */
import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json",
};

export interface StaticServer {
  readonly url: string;
  close(): Promise<void>;
}

/** Serves the files in `dir` (GET only, no listing) on `host:port`; port 0 picks a free one. */
export async function serveStatic(dir: string, port = 0, host = "127.0.0.1"): Promise<StaticServer> {
  const root = normalize(dir);
  const server: Server = createServer(async (req, res) => {
    const pathname = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    const file = normalize(join(root, pathname.endsWith("/") ? `${pathname}index.html` : pathname));
    if (req.method !== "GET" || !file.startsWith(root + sep)) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" }).end(body);
    } catch {
      res.writeHead(404).end("not found");
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  const address = server.address() as AddressInfo;
  return {
    url: `http://${host}:${address.port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

if (import.meta.main) {
  const here = fileURLToPath(new URL(".", import.meta.url));
  const { url } = await serveStatic(process.argv[3] ?? join(here, "dist"), Number(process.argv[2] ?? 8080));
  console.log(`serving the page on ${url}`);
}
