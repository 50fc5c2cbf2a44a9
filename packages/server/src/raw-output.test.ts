// The raw output stream (GET /sbx.v1/output/...) against the real server: what it serves,
// how it fails, and that SDK clients read through it (node:http and fetch) with ReadOutput
// only for the end marker.
import { createHash } from "node:crypto";
import * as sdk from "@sbx/node";
import { describe, expect, it } from "vitest";
import { fetchClient, realServerAvailable, useTestServer } from "./test-support.js";

const available = await realServerAvailable();

if (available) {
  describe("raw output stream", () => {
    const server = useTestServer();
    const auth = () => ({ authorization: `Bearer ${server.token}` });
    const url = (sandboxId: string, processId: string, stream: string, offset: string | number = 0) =>
      `${server.url}/sbx.v1/output/${sandboxId}/${processId}/${stream}?offset=${offset}`;

    it("serves a finished stream from any offset, and follows a live one until it ends", async () => {
      const client = new sdk.SandboxClient({ endpoint: server.url, token: server.token });
      try {
        const sb = await client.sandboxes.create();
        const done = await sb.run("printf 'hello, raw world'; printf 'err' >&2");
        expect(done.stdout).toBe("hello, raw world");
        const finished = await sb.run("printf 'hello, raw world'", { wait: false });
        await finished.wait();
        const whole = await fetch(url(sb.id, finished.commandId, "stdout"), { headers: auth() });
        expect(whole.status).toBe(200);
        expect(whole.headers.get("content-type")).toBe("application/octet-stream");
        expect(whole.headers.get("x-sbx-raw")).toBe("output");
        expect(await whole.text()).toBe("hello, raw world");
        const rest = await fetch(url(sb.id, finished.commandId, "stdout", 7), { headers: auth() });
        expect(await rest.text()).toBe("raw world");
        const atEnd = await fetch(url(sb.id, finished.commandId, "stdout", 16), { headers: auth() });
        expect(atEnd.status).toBe(200);
        expect(await atEnd.text()).toBe("");

        // Live: the first line arrives while the command waits on stdin; the body ends when it exits.
        const live = await sb.run('echo first; read line; echo "got $line"', { wait: false });
        const response = await fetch(url(sb.id, live.commandId, "stdout"), { headers: auth() });
        const reader = (response.body as ReadableStream<Uint8Array>).getReader();
        const decoder = new TextDecoder();
        let text = "";
        while (!text.includes("\n")) {
          const { value, done: ended } = await reader.read();
          expect(ended).toBe(false);
          text += decoder.decode(value, { stream: true });
        }
        expect(text).toBe("first\n");
        await live.sendInput("second\n");
        for (;;) {
          const { value, done: ended } = await reader.read();
          if (ended) break;
          text += decoder.decode(value, { stream: true });
        }
        expect(text).toBe("first\ngot second\n");
        await sb.terminate();
      } finally {
        await client.close();
      }
    });

    it("answers bad requests with a status and a JSON reason, and keeps serving", async () => {
      const client = new sdk.SandboxClient({ endpoint: server.url, token: server.token });
      try {
        const sb = await client.sandboxes.create();
        const handle = await sb.run("printf 12345", { wait: false });
        await handle.wait();
        const cases: [string, string, RequestInit, number, string][] = [
          ["no token", url(sb.id, handle.commandId, "stdout"), {}, 401, "unauthenticated"],
          [
            "wrong token",
            url(sb.id, handle.commandId, "stdout"),
            { headers: { authorization: "Bearer nope" } },
            401,
            "unauthenticated",
          ],
          ["unknown sandbox", url("sb-nope", handle.commandId, "stdout"), { headers: auth() }, 404, "not_found"],
          ["unknown process", url(sb.id, "nope", "stdout"), { headers: auth() }, 404, "not_found"],
          ["unknown stream", url(sb.id, handle.commandId, "stdin"), { headers: auth() }, 404, "not_found"],
          ["negative offset", url(sb.id, handle.commandId, "stdout", -1), { headers: auth() }, 400, "invalid_argument"],
          [
            "offset not a number",
            url(sb.id, handle.commandId, "stdout", "x"),
            { headers: auth() },
            400,
            "invalid_argument",
          ],
          ["offset past the end", url(sb.id, handle.commandId, "stdout", 6), { headers: auth() }, 416, "out_of_range"],
          [
            "not a GET",
            url(sb.id, handle.commandId, "stdout"),
            { method: "POST", headers: auth(), body: "x" },
            405,
            "unimplemented",
          ],
        ];
        for (const [what, target, init, status, code] of cases) {
          const response = await fetch(target, init);
          expect(response.status, what).toBe(status);
          expect(response.headers.get("x-sbx-raw"), what).toBe("output");
          expect(((await response.json()) as { code: string }).code, what).toBe(code);
        }
        // Still serving, through the raw stream and Connect alike.
        expect((await sb.run("echo still here")).stdout).toBe("still here\n");
        await sb.terminate();
      } finally {
        await client.close();
      }
    });

    it("counts as an attached reader: leaving it kills a killOnDisconnect command", async () => {
      const client = new sdk.SandboxClient({ endpoint: server.url, token: server.token });
      try {
        const sb = await client.sandboxes.create();
        // Nothing but the raw read below is attached (the handle is not read from).
        const handle = await sb.run("echo up; sleep 600", { wait: false, timeoutMs: 0, killOnDisconnect: true });
        const controller = new AbortController();
        const response = await fetch(url(sb.id, handle.commandId, "stdout"), {
          headers: auth(),
          signal: controller.signal,
        });
        const reader = (response.body as ReadableStream<Uint8Array>).getReader();
        await reader.read(); // "up"
        controller.abort();
        await new Promise((resolve) => setTimeout(resolve, 2_500)); // past the 1 s grace
        const again = await sb.reconnect(handle.commandId, { stdoutOffset: 3 });
        expect((await again.result).exitCode).toBe(137);
        await sb.terminate();
      } finally {
        await client.close();
      }
    }, 30_000);

    for (const reader of ["node:http", "fetch"] as const) {
      it(`an SDK client reading through it (${reader}) gets every byte of a large output, in order`, async () => {
        const client =
          reader === "node:http"
            ? new sdk.SandboxClient({ endpoint: server.url, token: server.token })
            : fetchClient(server);
        try {
          const sb = await client.sandboxes.create();
          // 24 MiB of numbered lines on stdout and a little on stderr, checked by digest.
          const script = "seq 1 3000000; echo bye >&2; exit 7";
          const expected = await sb.run("seq 1 3000000 | sha256sum");
          const process = await sb.exec(["sh", "-c", script], { mode: "binary" });
          const hash = createHash("sha256");
          let bytes = 0;
          for await (const chunk of process.stdout) {
            hash.update(chunk);
            bytes += chunk.byteLength;
          }
          expect(bytes).toBeGreaterThan(20_000_000);
          expect(`${hash.digest("hex")}  -\n`).toBe(expected.stdout);
          expect(await process.wait()).toBe(7);
          expect(new TextDecoder().decode(await process.stderr.readBytes())).toBe("bye\n");
          await sb.terminate();
        } finally {
          await client.close();
        }
      }, 120_000);
    }
  });
}
