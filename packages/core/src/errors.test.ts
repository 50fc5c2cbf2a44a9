import { describe, expect, it } from "vitest";
import * as errors from "./errors.js";

describe("SandboxError family", () => {
  it("has stable codes, tags and names", () => {
    const e = new errors.NotFoundError("no such sandbox");
    expect(e.code).toBe("not_found");
    expect(e._tag).toBe("NotFoundError");
    expect(e.name).toBe("NotFoundError");
    expect(e.message).toBe("no such sandbox");
    expect(e).toBeInstanceOf(Error);
    expect(e instanceof errors.SandboxError).toBe(true);
    expect(e instanceof errors.InvalidError).toBe(false);
  });

  it("keeps the filesystem hierarchy", () => {
    const e = new errors.SandboxFilesystemNotFoundError("/x");
    expect(e instanceof errors.SandboxFilesystemError).toBe(true);
    expect(e instanceof errors.SandboxError).toBe(true);
    expect(e instanceof errors.SandboxFilesystemPermissionError).toBe(false);
    expect(e.code).toBe("filesystem_not_found");
  });

  it("AbortedError looks like fetch's AbortError", () => {
    const e = new errors.AbortedError();
    expect(e.name).toBe("AbortError");
    expect(e.code).toBe("aborted");
    expect(e instanceof errors.SandboxError).toBe(true);
  });

  it("instanceof works across duplicated copies of the package", async () => {
    // A second, separately evaluated copy of the module, as with two installed versions.
    const copy = (await import(/* @vite-ignore */ `./errors.js?copy=${Date.now()}`)) as typeof errors;
    expect(copy.NotFoundError).not.toBe(errors.NotFoundError);
    const fromCopy = new copy.NotFoundError("x");
    expect(fromCopy instanceof errors.NotFoundError).toBe(true);
    expect(fromCopy instanceof errors.SandboxError).toBe(true);
    expect(fromCopy instanceof errors.AlreadyExistsError).toBe(false);
    expect(new errors.InvalidError("y") instanceof copy.InvalidError).toBe(true);
    expect({ code: "not_found" } instanceof errors.SandboxError).toBe(false);
    expect((null as unknown as object) instanceof errors.SandboxError).toBe(false);
  });

  it("keeps the cause and rpc status", () => {
    const cause = new Error("root");
    const e = new errors.ConnectionError("down", { cause, rpcStatus: "unavailable" });
    expect(e.cause).toBe(cause);
    expect(e.rpcStatus).toBe("unavailable");
  });
});
