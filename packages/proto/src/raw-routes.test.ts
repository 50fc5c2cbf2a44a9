import { describe, expect, it } from "vitest";
import {
  parseRawOffset,
  parseRawOutputPath,
  RAW_FILES_PREFIX,
  RAW_OUTPUT_PREFIX,
  RAW_QUERY,
  rawFilePath,
  rawOutputPath,
} from "./raw-routes.js";

describe("raw routes", () => {
  it("builds the output path, and parses it back", () => {
    const path = rawOutputPath("sb 1", "p/2", "stderr", 42);
    expect(path).toBe("/sbx.v1/output/sb%201/p%2F2/stderr?offset=42");
    const url = new URL(path, "http://sbx");
    expect(url.pathname.startsWith(RAW_OUTPUT_PREFIX)).toBe(true);
    expect(parseRawOutputPath(url.pathname)).toEqual({ sandboxId: "sb 1", processId: "p/2", stream: "stderr" });
    expect(parseRawOffset(url.searchParams.get(RAW_QUERY.offset))).toBe(42);
  });

  it("refuses pathnames that name no output stream, and offsets that are not byte offsets", () => {
    for (const bad of ["/sbx.v1/output/", "/sbx.v1/output/sb", "/sbx.v1/output/sb/p", "/sbx.v1/output/sb/p/stdin"]) {
      expect(parseRawOutputPath(bad), bad).toBeUndefined();
    }
    expect(parseRawOffset(null)).toBe(0);
    for (const bad of ["", "-1", "1.5", "0x10", " 1", "99999999999999999999"]) {
      expect(parseRawOffset(bad), bad).toBeUndefined();
    }
  });

  it("builds the files path, with an upload's id and last chunk", () => {
    expect(rawFilePath("sb", "/a b/c", 0)).toBe(`${RAW_FILES_PREFIX}sb?path=%2Fa%20b%2Fc&offset=0`);
    const put = new URL(rawFilePath("sb", "/x", 7, { id: "up-1", finish: true }), "http://sbx");
    expect(Object.fromEntries(put.searchParams)).toEqual({ path: "/x", offset: "7", upload: "up-1", finish: "1" });
    expect(rawFilePath("sb", "/x", 7, { id: "u", finish: false })).not.toContain(RAW_QUERY.finish);
  });
});
