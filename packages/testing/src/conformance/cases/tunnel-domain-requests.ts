/**
 * What reaches an app through a tunnel domain's names: request framing kept (no body turned
 * into a second request), the host the request was routed by, cookie-authenticated requests
 * from other origins refused, and gateway names that say nothing about sandboxes without a token.
 */
import { deepEqual, equal, fieldsEqual, match } from "../assert.js";
import { readHttpMessage, statusLine } from "../http-message.js";
import type { TestApi } from "../target.js";
import { HTTP_PORT, type MainEnv, NO_SANDBOX, nameOf, RAW_PORT, T } from "./tunnel-domain-env.js";

/** A request as the request reader read it (see TestAppName "request-reader"). */
interface Received {
  readonly requestLine: string;
  readonly headers: Record<string, string[] | undefined>;
  readonly body: string;
}

/** The JSON body of the whole answer that starts `bytes`. */
function bodyOf<T>(bytes: string): T {
  const answer = readHttpMessage(bytes);
  if (!answer) throw new Error(`not a whole answer: ${JSON.stringify(bytes.slice(0, 200))}`);
  return JSON.parse(answer.body) as T;
}

export function tunnelDomainRequestCases(t: TestApi, env: MainEnv): void {
  t.it(
    "an HTTP/2 request's body without a length goes to the app chunked, never as bytes after the request",
    async () => {
      const { sb, url, wire } = await env();
      const { token } = await sb.createConnectToken({ port: RAW_PORT, userMetadata: { user: "ada" } });
      const smuggled = `GET /smuggled HTTP/1.1\r\nHost: x\r\nX-Verified-User-Data: {"user":"bob"}\r\n\r\n`;
      const session = wire.http2(url);
      try {
        const answer = await session.request(
          {
            ":method": "GET",
            ":path": "/first",
            ":authority": nameOf(sb.id, RAW_PORT, true),
            authorization: `Bearer ${token}`,
          },
          smuggled,
        ).answer;
        const app = JSON.parse(answer.text) as Received;
        equal(app.requestLine, "GET /first HTTP/1.1");
        deepEqual(app.headers["transfer-encoding"], ["chunked"]);
        equal(app.headers["content-length"], undefined);
        deepEqual(app.headers["x-verified-user-data"], ['{"user":"ada"}']);
        equal(app.body, smuggled);
      } finally {
        session.close();
      }
    },
    T,
  );

  t.it(
    "Connection naming Content-Length, Host or X-Verified-User-Data removes none of them",
    async () => {
      const { sb, port, wire } = await env();
      const { token } = await sb.createConnectToken({ port: RAW_PORT, userMetadata: { user: "ada" } });
      const gateway = nameOf(sb.id, RAW_PORT, true);
      const app = bodyOf<Received>(
        await wire.connect(
          port,
          `GET /cl HTTP/1.1\r\nHost: ${gateway}\r\nAuthorization: Bearer ${token}\r\n` +
            `Connection: close, content-length, host, x-verified-user-data, x-gone\r\nX-Gone: 1\r\nContent-Length: 5\r\n\r\nHELLO`,
        ).closed,
      );
      deepEqual(app.headers["content-length"], ["5"]);
      deepEqual(app.headers.host, [gateway]);
      deepEqual(app.headers["x-verified-user-data"], ['{"user":"ada"}']);
      equal(app.headers["x-gone"], undefined);
      equal(app.body, "HELLO");
    },
    T,
  );

  t.it(
    "a chunked GET goes on chunked; a transfer coding other than chunked, or two lengths: 400",
    async () => {
      const { sb, port, wire } = await env();
      const name = nameOf(sb.id, RAW_PORT);
      const app = bodyOf<Received>(
        await wire.connect(
          port,
          `GET /te HTTP/1.1\r\nHost: ${name}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nHELLO\r\n0\r\n\r\n`,
        ).closed,
      );
      deepEqual(app.headers["transfer-encoding"], ["chunked"]);
      equal(app.body, "HELLO");
      for (const request of [
        `GET /te HTTP/1.1\r\nHost: ${name}\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n5\r\nHELLO\r\n0\r\n\r\n`,
        `POST /te HTTP/1.1\r\nHost: ${name}\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nHELLO\r\n0\r\n\r\n`,
        `POST /cl HTTP/1.1\r\nHost: ${name}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nHELLO!`,
      ]) {
        match(await wire.connect(port, request).closed, /^HTTP\/1\.1 (400|501) /, request);
      }
    },
    T,
  );

  t.it(
    "the app is told the host the request was routed by (HTTP/2 :authority, an absolute target), not another Host",
    async () => {
      const { sb, other, port, url, wire } = await env();
      const name = nameOf(sb.id, HTTP_PORT);
      const session = wire.http2(url);
      try {
        const answer = await session.request({ ":path": "/h2", ":authority": name, host: "evil.example" }).answer;
        fieldsEqual(JSON.parse(answer.text), { sandboxId: sb.id, host: name, path: "/h2" });
      } finally {
        session.close();
      }
      const absolute = await wire.connect(
        port,
        `GET http://x@${name}/abs HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n`,
      ).closed;
      fieldsEqual(bodyOf(absolute), { sandboxId: sb.id, host: name, path: "/abs" });
      // Several Host headers are refused with an absolute target too.
      const twoHosts = await wire.connect(
        port,
        `GET http://${name}/ HTTP/1.1\r\nHost: ${name}\r\nHost: ${nameOf(other.id, HTTP_PORT)}\r\nConnection: close\r\n\r\n`,
      ).closed;
      match(twoHosts, /^HTTP\/1\.1 400 /);
    },
    T,
  );

  t.it(
    "a cookie does not let in a request that changes things from another origin (403); a token sent along does",
    async () => {
      const { sb, other, port, wire } = await env();
      const { url: tokenUrl, token } = await sb.createConnectToken({ port: HTTP_PORT, userMetadata: { user: "ada" } });
      const gateway = new URL(tokenUrl).host;
      const sibling = `http://${nameOf(other.id, HTTP_PORT)}:${port}`;
      const status = async (method: string, headers: string) =>
        statusLine(
          await wire.connect(
            port,
            `${method} /act HTTP/1.1\r\nHost: ${gateway}\r\n${headers}Content-Length: 0\r\nConnection: close\r\n\r\n`,
          ).closed,
        );
      const withCookie = `Cookie: sbx_${sb.id}_${HTTP_PORT}=${token}\r\n`;
      equal(await status("POST", `${withCookie}Origin: ${sibling}\r\n`), "HTTP/1.1 403 Forbidden");
      equal(await status("DELETE", `${withCookie}Origin: null\r\n`), "HTTP/1.1 403 Forbidden");
      equal(await status("PUT", `${withCookie}Sec-Fetch-Site: same-site\r\n`), "HTTP/1.1 403 Forbidden");
      equal(await status("POST", `${withCookie}Sec-Fetch-Site: cross-site\r\n`), "HTTP/1.1 403 Forbidden");
      // The host's own origin, a request with neither header (not a browser's), a safe method: let in.
      equal(
        await status("POST", `${withCookie}Origin: ${new URL(tokenUrl).origin}\r\nSec-Fetch-Site: same-origin\r\n`),
        "HTTP/1.1 200 OK",
      );
      equal(await status("POST", `${withCookie}Sec-Fetch-Site: none\r\n`), "HTTP/1.1 200 OK");
      equal(await status("POST", withCookie), "HTTP/1.1 200 OK");
      equal(await status("GET", `${withCookie}Origin: ${sibling}\r\nSec-Fetch-Site: same-site\r\n`), "HTTP/1.1 200 OK");
      // The token in the request itself (a page had to be given it): any origin.
      equal(await status("POST", `Authorization: Bearer ${token}\r\nOrigin: ${sibling}\r\n`), "HTTP/1.1 200 OK");
      equal(await status("POST", `Origin: ${sibling}\r\n`), "HTTP/1.1 401 Unauthorized");
    },
    T,
  );

  t.it(
    "a gateway name answers 401 alike for a sandbox that runs, one that ended and one that never was",
    async () => {
      const { other, port, wire, sandbox } = await env();
      const ask = async (name: string) =>
        (await wire.connect(port, `GET / HTTP/1.1\r\nHost: ${name}\r\nConnection: close\r\n\r\n`).closed).replace(
          /\r\ndate: [^\r]*/i,
          "",
        );
      const ended = await sandbox([HTTP_PORT]);
      await ended.terminate({ wait: true });
      const running = await ask(nameOf(other.id, 1, true));
      match(running, /^HTTP\/1\.1 401 /);
      equal(await ask(nameOf(ended.id, HTTP_PORT, true)), running);
      equal(await ask(nameOf(NO_SANDBOX, 1, true)), running);
    },
    T,
  );
}
