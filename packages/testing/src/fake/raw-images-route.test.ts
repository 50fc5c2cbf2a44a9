// The raw images route's refusals over a port (the fake mounts server-kit's route as the server
// does): each a marked Connect JSON error with its own HTTP status.
import { RAW_HEADER, RAW_IMAGE_IMPORT_PATH, RAW_STATUS } from "@sbx/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFakeServer } from "../index.js";

const TOKEN = "raw-images-token";
const fake = createFakeServer({ token: TOKEN });
let url: string;
let close: () => Promise<void>;
beforeAll(async () => {
  ({ url, close } = await fake.listen());
});
afterAll(async () => {
  await close();
  await fake.close();
});

/** The answer's status, marker and Connect error code. */
async function answer(path: string, init: RequestInit): Promise<[number, string | null, unknown]> {
  const res = await fetch(new URL(path, url), init);
  const body = (await res.json()) as { code?: unknown };
  return [res.status, res.headers.get(RAW_HEADER), body.code];
}

const auth = { authorization: `Bearer ${TOKEN}` };

describe("the raw images route", () => {
  it("refuses a request without the token, another method and another path", async () => {
    expect(await answer(RAW_IMAGE_IMPORT_PATH, { method: "POST", body: "x" })).toEqual([
      RAW_STATUS.unauthorized,
      "images",
      "unauthenticated",
    ]);
    expect(await answer(RAW_IMAGE_IMPORT_PATH, { method: "POST", headers: { authorization: "Bearer no" } })).toEqual([
      RAW_STATUS.unauthorized,
      "images",
      "unauthenticated",
    ]);
    expect(await answer(RAW_IMAGE_IMPORT_PATH, { method: "GET", headers: auth })).toEqual([
      RAW_STATUS.methodNotAllowed,
      "images",
      "unimplemented",
    ]);
    expect(await answer(`${RAW_IMAGE_IMPORT_PATH}/more`, { method: "POST", headers: auth, body: "x" })).toEqual([
      RAW_STATUS.notFound,
      "images",
      "not_found",
    ]);
  });

  it("answers an archive it cannot read with 400, and serves on", async () => {
    const notAnArchive = new Uint8Array(8 * 1024 * 1024).fill(7);
    expect(await answer(RAW_IMAGE_IMPORT_PATH, { method: "POST", headers: auth, body: notAnArchive })).toEqual([
      RAW_STATUS.badRequest,
      "images",
      "invalid_argument",
    ]);
    // The route serves on after it.
    expect(await answer(RAW_IMAGE_IMPORT_PATH, { method: "GET", headers: auth })).toEqual([
      RAW_STATUS.methodNotAllowed,
      "images",
      "unimplemented",
    ]);
  });
});
