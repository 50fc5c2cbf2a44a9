// An endpoint that is not an sbx server — a plain web server answering 404 (or a wrong path
// prefix), https:// pointed at plain HTTP — fails with a ConnectionError that says so and
// names the endpoint, over every protocol the Node client speaks.
import { createServer, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConnectionError, SandboxClient } from "./index.js";

let plain: Server;
let url = "";
beforeAll(async () => {
  plain = createServer((req, res) => {
    req.resume();
    res.writeHead(404, { "content-type": "text/html" }).end("<h1>Not Found</h1>");
  });
  await new Promise<void>((resolve) => plain.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(plain.address() as { port: number }).port}`;
});
afterAll(() => {
  plain.close();
});

const transports = [
  { name: "Connect over HTTP/1.1", options: { httpVersion: "1.1" as const } },
  { name: "Connect over HTTP/2", options: {} },
  { name: "gRPC", options: { protocol: "grpc" as const } },
];

describe("an endpoint that is not an sbx server", () => {
  for (const { name, options } of transports) {
    it(`${name}: a plain web server, a wrong prefix, https:// to plain HTTP`, async () => {
      for (const endpoint of [url, `${url}/wrong/prefix`, url.replace("http:", "https:")]) {
        await using client = new SandboxClient({ ...options, endpoint, token: "t", maxRetries: 0 });
        const error = await client.sandboxes.fromId("sb-1").catch((e: unknown) => e);
        expect(error, endpoint).toBeInstanceOf(ConnectionError);
        expect((error as Error).message).toContain(`this is not an sbx server at ${endpoint}`);
      }
    });
  }
});
