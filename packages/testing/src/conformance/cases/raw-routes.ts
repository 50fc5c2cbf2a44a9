// The raw HTTP routes (see @sbx/proto's raw-routes.ts for their contract), spoken with
// `fetch`, so they run in any runtime against a target that serves HTTP.
import {
  RAW_FILES_PREFIX,
  RAW_HEADER,
  RAW_OFFSET_HEADER,
  RAW_OUTPUT_PREFIX,
  RAW_QUERY,
  RAW_STATUS,
  rawFilePath,
  rawOutputPath,
} from "@sbx/proto";
import { equal, ok } from "../assert.js";
import type { ConformanceTarget, Harness, TestApi } from "../target.js";

const T = 30_000;
type Endpoint = NonNullable<ConformanceTarget["endpoint"]>;
const decoder = new TextDecoder();

export function rawRouteCases(t: TestApi, h: Harness, endpoint: Endpoint): void {
  /** A request to `path` (and query) on the target; the token unless `auth` is false. */
  const raw = async (path: string, init: RequestInit & { auth?: boolean } = {}) => {
    const { url, token } = endpoint();
    const { auth = true, ...rest } = init;
    const headers = new Headers(rest.headers);
    if (auth) headers.set("authorization", `Bearer ${token}`);
    const response = await fetch(url.replace(/\/+$/, "") + path, { ...rest, headers });
    const body = new Uint8Array(await response.arrayBuffer());
    return { status: response.status, headers: response.headers, body, text: decoder.decode(body) };
  };
  /** Expects a raw route's error answer: `status`, the route's marker, a Connect JSON error with `code`. */
  const failed = (
    answer: Awaited<ReturnType<typeof raw>>,
    route: string,
    status: number,
    code: string,
    what: string,
  ) => {
    equal(answer.status, status, `${what}: status`);
    equal(answer.headers.get(RAW_HEADER), route, `${what}: ${RAW_HEADER}`);
    let json: { code?: unknown; message?: unknown };
    try {
      json = JSON.parse(answer.text);
    } catch {
      throw new Error(`${what}: the body is not a Connect JSON error: ${answer.text.slice(0, 200)}`);
    }
    equal(json.code, code, `${what}: error code`);
    ok(typeof json.message === "string" && json.message.length > 0, `${what}: an error message`);
  };

  t.describe("raw routes", () => {
    t.it(
      "output by offset: GET /sbx.v1/output/… answers the bytes from the offset",
      async () => {
        const sb = await h.sandbox();
        const p = await sb.exec(["sh", "-c", "printf 'hello raw output'; printf 'err!' >&2"]);
        equal(await p.wait(), 0);
        const whole = await raw(rawOutputPath(sb.id, p.processId, "stdout", 0));
        equal(whole.status, RAW_STATUS.ok);
        equal(whole.headers.get(RAW_HEADER), "output");
        equal(whole.headers.get(RAW_OFFSET_HEADER), "0");
        equal(whole.text, "hello raw output");
        const tail = await raw(rawOutputPath(sb.id, p.processId, "stdout", 6));
        equal(tail.status, RAW_STATUS.ok);
        equal(tail.headers.get(RAW_OFFSET_HEADER), "6");
        equal(tail.text, "raw output");
        const atEnd = await raw(rawOutputPath(sb.id, p.processId, "stdout", 16));
        equal(atEnd.status, RAW_STATUS.ok, "an offset at the end of an ended stream");
        equal(atEnd.body.byteLength, 0);
        const stderr = await raw(rawOutputPath(sb.id, p.processId, "stderr", 1));
        equal(stderr.text, "rr!");
        const noOffset = await raw(`${RAW_OUTPUT_PREFIX}${sb.id}/${p.processId}/stdout`);
        equal(noOffset.text, "hello raw output", "no offset means 0");
      },
      T,
    );

    t.it(
      "output: every answer says x-sbx-raw: output, with statuses 401, 400, 404, 405, 416",
      async () => {
        const sb = await h.sandbox();
        const p = await sb.exec(["echo", "four"]);
        equal(await p.wait(), 0);
        const path = rawOutputPath(sb.id, p.processId, "stdout", 0);
        failed(await raw(path, { auth: false }), "output", RAW_STATUS.unauthorized, "unauthenticated", "no token");
        failed(
          await raw(`${RAW_OUTPUT_PREFIX}${sb.id}/${p.processId}/stdout?${RAW_QUERY.offset}=-1`),
          "output",
          RAW_STATUS.badRequest,
          "invalid_argument",
          "a negative offset",
        );
        failed(
          await raw(rawOutputPath(sb.id, "no-such-process", "stdout", 0)),
          "output",
          RAW_STATUS.notFound,
          "not_found",
          "an unknown process",
        );
        failed(
          await raw(`${RAW_OUTPUT_PREFIX}${sb.id}/${p.processId}/stdin`),
          "output",
          RAW_STATUS.notFound,
          "not_found",
          "a stream that is not stdout or stderr",
        );
        const post = await raw(path, { method: "POST", body: "x" });
        equal(post.status, RAW_STATUS.methodNotAllowed, "POST: status");
        equal(post.headers.get(RAW_HEADER), "output", "POST: marker");
        failed(
          await raw(rawOutputPath(sb.id, p.processId, "stdout", 6)),
          "output",
          RAW_STATUS.rangeNotSatisfiable,
          "out_of_range",
          "an offset past the end of an ended stream",
        );
      },
      T,
    );

    t.it(
      "files: PUT chunks then GET from an offset, both saying x-sbx-raw: files",
      async () => {
        const sb = await h.sandbox();
        const file = "/tmp/raw-route.txt";
        const upload = `up-${Math.random().toString(36).slice(2, 10)}`;
        const first = await raw(rawFilePath(sb.id, file, 0, { id: upload, finish: false }), {
          method: "PUT",
          body: "hello ",
        });
        equal(first.status, RAW_STATUS.ok, `first chunk: ${first.text}`);
        equal(first.headers.get(RAW_HEADER), "files");
        const firstJson = JSON.parse(first.text) as { committedOffset?: number; finished?: boolean };
        equal(firstJson.committedOffset, 6);
        equal(firstJson.finished, false);
        const last = await raw(rawFilePath(sb.id, file, 6, { id: upload, finish: true }), {
          method: "PUT",
          body: "raw world",
        });
        equal(last.status, RAW_STATUS.ok, `last chunk: ${last.text}`);
        const lastJson = JSON.parse(last.text) as { committedOffset?: number; finished?: boolean };
        equal(lastJson.committedOffset, 15);
        equal(lastJson.finished, true);
        equal(await sb.filesystem.readText(file), "hello raw world", "the file through the SDK");
        const whole = await raw(rawFilePath(sb.id, file, 0));
        equal(whole.status, RAW_STATUS.ok);
        equal(whole.headers.get(RAW_HEADER), "files");
        equal(whole.headers.get(RAW_OFFSET_HEADER), "0");
        equal(whole.text, "hello raw world");
        const tail = await raw(rawFilePath(sb.id, file, 10));
        equal(tail.headers.get(RAW_OFFSET_HEADER), "10");
        equal(tail.text, "world");
      },
      T,
    );

    t.it(
      "files: statuses 401, 400, 404 with a Connect JSON error, 405 for other methods",
      async () => {
        const sb = await h.sandbox();
        await sb.filesystem.writeText("x", "/tmp/raw-there.txt");
        const there = rawFilePath(sb.id, "/tmp/raw-there.txt", 0);
        failed(await raw(there, { auth: false }), "files", RAW_STATUS.unauthorized, "unauthenticated", "no token");
        failed(
          await raw(`${RAW_FILES_PREFIX}${sb.id}?${RAW_QUERY.path}=%2Ftmp%2Fraw-there.txt&${RAW_QUERY.offset}=x`),
          "files",
          RAW_STATUS.badRequest,
          "invalid_argument",
          "an offset that is not a number",
        );
        failed(
          await raw(rawFilePath(sb.id, "relative.txt", 0)),
          "files",
          RAW_STATUS.badRequest,
          "invalid_argument",
          "a relative path",
        );
        failed(
          await raw(rawFilePath(sb.id, "/tmp/raw-missing.txt", 0)),
          "files",
          RAW_STATUS.notFound,
          "not_found",
          "a missing file",
        );
        failed(
          await raw(rawFilePath("sb-no-such-sandbox", "/tmp/raw-there.txt", 0)),
          "files",
          RAW_STATUS.notFound,
          "not_found",
          "an unknown sandbox",
        );
        const del = await raw(there, { method: "DELETE" });
        equal(del.status, RAW_STATUS.methodNotAllowed, "DELETE: status");
        equal(del.headers.get(RAW_HEADER), "files", "DELETE: marker");
        equal(await sb.filesystem.readText("/tmp/raw-there.txt"), "x", "nothing was removed");
      },
      T,
    );
  });
}
