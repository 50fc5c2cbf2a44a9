import { create } from "@bufbuild/protobuf";
import { ExitStatusSchema } from "@sbx/proto";
import { describe, expect, it } from "vitest";
import { InternalError } from "./errors.js";
import { knownReturncode, returncodeOf } from "./returncode.js";

const status = (kind: Parameters<typeof create<typeof ExitStatusSchema>>[1]) => create(ExitStatusSchema, kind);

describe("returncode mapping", () => {
  it("maps each way of ending", () => {
    expect(returncodeOf(status({ kind: { case: "exited", value: 3 } }))).toBe(3);
    expect(returncodeOf(status({ kind: { case: "exited", value: 0 } }))).toBe(0);
    expect(returncodeOf(status({ kind: { case: "signaled", value: 15 } }))).toBe(143);
    expect(returncodeOf(status({ kind: { case: "timedOut", value: true } }))).toBe(124);
    expect(returncodeOf(status({ kind: { case: "terminated", value: true } }))).toBe(137);
    expect(returncodeOf(status({ kind: { case: "unknown", value: true } }))).toBeNull();
    expect(returncodeOf(undefined)).toBeNull();
  });
  it("knownReturncode throws for unknown", () => {
    expect(() => knownReturncode(undefined, "x")).toThrow(InternalError);
  });
});
