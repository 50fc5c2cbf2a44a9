// The raw files route (GET/PUT /sbx.v1/files/...) against the real server: what it serves and
// accepts, how it fails, that upload chunks are applied once however often they are sent, and
// that SDK clients move files through it (node:http and fetch) with the same typed errors.
import { createHash, randomBytes } from "node:crypto";
import { fetchRawHttp } from "@sbx/core/adapter";
import * as sdk from "@sbx/node";
import { describe, expect, it } from "vitest";
import { fetchClient, realServerAvailable, useTestSandbox, useTestServer } from "./test-support.js";

const available = await realServerAvailable();

const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");

if (available) {
  describe("raw files route", () => {
    const server = useTestServer();
    const box = useTestSandbox(server);
    const auth = () => ({ authorization: `Bearer ${server.token}` });
    const fileUrl = (path: string, query = "") =>
      `${server.url}/sbx.v1/files/${box.sandbox.id}?path=${encodeURIComponent(path)}${query}`;
    const put = (path: string, query: string, body: Uint8Array | string) =>
      fetch(fileUrl(path, query), { method: "PUT", headers: auth(), body });

    it("serves a file from any offset", async () => {
      await box.sandbox.run("mkdir -p /rf && printf 'hello, raw file' > /rf/a.txt");
      const whole = await fetch(fileUrl("/rf/a.txt"), { headers: auth() });
      expect(whole.status).toBe(200);
      expect(whole.headers.get("x-sbx-raw")).toBe("files");
      expect(whole.headers.get("content-type")).toBe("application/octet-stream");
      expect(await whole.text()).toBe("hello, raw file");
      const rest = await fetch(fileUrl("/rf/a.txt", "&offset=7"), { headers: auth() });
      expect(await rest.text()).toBe("raw file");
      const past = await fetch(fileUrl("/rf/a.txt", "&offset=100"), { headers: auth() });
      expect(past.status).toBe(200);
      expect(await past.text()).toBe("");
    });

    it("applies upload chunks once, at their offsets, and moves the file into place on finish", async () => {
      const sb = box.sandbox;
      const upload = `u${Date.now()}`;
      const first = await put("/rf/up.txt", `&upload=${upload}&offset=0`, "hello ");
      expect(first.status).toBe(200);
      expect(await first.json()).toEqual({ committedOffset: 6, finished: false });
      // Not visible yet: the upload goes to a temporary name.
      expect((await sb.run("test -e /rf/up.txt")).exitCode).toBe(1);
      // The same chunk again, and one overlapping it: bytes already written are skipped.
      expect(await (await put("/rf/up.txt", `&upload=${upload}&offset=0`, "hello ")).json()).toEqual({
        committedOffset: 6,
        finished: false,
      });
      expect(await (await put("/rf/up.txt", `&upload=${upload}&offset=3`, "lo wor")).json()).toEqual({
        committedOffset: 9,
        finished: false,
      });
      // An empty chunk tells how far the upload got.
      expect(await (await put("/rf/up.txt", `&upload=${upload}&offset=0`, "")).json()).toEqual({
        committedOffset: 9,
        finished: false,
      });
      // A gap is refused and changes nothing.
      const gap = await put("/rf/up.txt", `&upload=${upload}&offset=20`, "x");
      expect(gap.status).toBe(400);
      expect(((await gap.json()) as { code: string }).code).toBe("failed_precondition");
      const last = await put("/rf/up.txt", `&upload=${upload}&offset=9&finish=1`, "ld");
      expect(await last.json()).toEqual({ committedOffset: 11, finished: true });
      expect(await sb.filesystem.readText("/rf/up.txt")).toBe("hello world");
      // A retried last chunk gets the same answer and changes nothing.
      expect(await (await put("/rf/up.txt", `&upload=${upload}&offset=9&finish=1`, "ld")).json()).toEqual({
        committedOffset: 11,
        finished: true,
      });
      expect(await sb.filesystem.readText("/rf/up.txt")).toBe("hello world");
      expect((await sb.filesystem.listFiles("/rf")).map((e) => e.name)).toEqual(["a.txt", "up.txt"]);
    });

    it("fails with Connect JSON errors carrying the filesystem error, and keeps serving", async () => {
      type Case = [string, string, RequestInit, number, string];
      const cases: Case[] = [
        ["no token", fileUrl("/rf/a.txt"), {}, 401, "unauthenticated"],
        ["missing file", fileUrl("/rf/missing"), { headers: auth() }, 404, "not_found"],
        ["a directory", fileUrl("/rf"), { headers: auth() }, 400, "failed_precondition"],
        ["relative path", fileUrl("rf/a.txt"), { headers: auth() }, 400, "invalid_argument"],
        ["bad offset", fileUrl("/rf/a.txt", "&offset=-1"), { headers: auth() }, 400, "invalid_argument"],
        [
          "PUT without upload id",
          fileUrl("/rf/b.txt"),
          { method: "PUT", headers: auth(), body: "x" },
          400,
          "invalid_argument",
        ],
        [
          "PUT onto a directory",
          fileUrl("/rf", "&upload=u1"),
          { method: "PUT", headers: auth(), body: "x" },
          400,
          "failed_precondition",
        ],
        ["DELETE", fileUrl("/rf/a.txt"), { method: "DELETE", headers: auth() }, 405, "unimplemented"],
        ["no such sandbox", `${server.url}/sbx.v1/files/sb-nope?path=/a`, { headers: auth() }, 404, "not_found"],
      ];
      for (const [what, target, init, status, code] of cases) {
        const response = await fetch(target, init);
        const body = (await response.json()) as { code: string; details?: unknown[] };
        expect([what, response.status, body.code]).toEqual([what, status, code]);
        expect(response.headers.get("x-sbx-raw"), what).toBe("files");
      }
      // The filesystem error detail travels too: the missing file's answer has it.
      const missing = (await (await fetch(fileUrl("/rf/missing"), { headers: auth() })).json()) as {
        details?: { type: string }[];
      };
      expect(missing.details?.[0]?.type).toBe("sbx.v1.FilesystemError");
      expect(await box.sandbox.filesystem.readText("/rf/a.txt")).toBe("hello, raw file");
    });

    for (const reader of ["node:http", "fetch"] as const) {
      it(`an SDK client (${reader}) moves a 40 MiB file both ways through it, with typed errors`, async () => {
        const served = { get: 0, put: 0 };
        const client =
          reader === "node:http"
            ? new sdk.SandboxClient({ endpoint: server.url, token: server.token })
            : fetchClient(server, (endpoint) => {
                const raw = fetchRawHttp(endpoint);
                return {
                  get: async (request) => {
                    const body = await raw.get(request);
                    if (body && request.route === "files") served.get++;
                    return body;
                  },
                  put: async (request) => {
                    const answer = await raw.put(request);
                    if (answer?.status === 200) served.put++;
                    return answer;
                  },
                };
              });
        try {
          const sb = await client.sandboxes.fromId(box.sandbox.id);
          const data = randomBytes(40 * 1024 * 1024 + 12345);
          const path = `/rf/${reader.replace(":", "-")}.bin`;
          await sb.filesystem.writeBytes(data, path);
          expect((await sb.run(`sha256sum ${path}`)).stdout.split(" ")[0]).toBe(sha256(data));
          const back = await sb.filesystem.readBytes(path);
          expect(back.byteLength).toBe(data.byteLength);
          expect(sha256(back)).toBe(sha256(data));
          // 40 MiB in 16 MiB chunks: three PUTs and one GET went through the raw route.
          if (reader === "fetch") expect(served).toEqual({ get: 1, put: 3 });
          await expect(sb.filesystem.readBytes("/rf/missing")).rejects.toBeInstanceOf(
            sdk.SandboxFilesystemNotFoundError,
          );
          await expect(sb.filesystem.writeText("x", "/rf")).rejects.toBeInstanceOf(
            sdk.SandboxFilesystemIsADirectoryError,
          );
          await expect(sb.filesystem.writeText("x", "/rf/a.txt/below")).rejects.toBeInstanceOf(
            sdk.SandboxFilesystemNotADirectoryError,
          );
        } finally {
          await client.close();
        }
      }, 120_000);
    }
  });
}
