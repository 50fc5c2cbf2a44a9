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

  it("an idle timeout is a SandboxTimeoutError with its own code", () => {
    const e = new errors.SandboxIdleTimeoutError("idle");
    expect(e instanceof errors.SandboxTimeoutError).toBe(true);
    expect(e.code).toBe("sandbox_idle_timeout");
    expect(new errors.SandboxTimeoutError("t") instanceof errors.SandboxIdleTimeoutError).toBe(false);
  });

  it("code is a union of literals: a switch over it is checked by tsc", () => {
    const describe = (error: errors.SandboxError): string => {
      switch (error.code) {
        case "not_found":
        case "filesystem_not_found":
          return "missing";
        case "sandbox_timeout":
        case "sandbox_idle_timeout":
        case "sandbox_terminated":
          return "sandbox ended";
        case "unsupported":
          return "not supported";
        // @ts-expect-error a misspelt code is not a code
        case "notfound":
          return "never";
        default:
          return error.code;
      }
    };
    expect(describe(new errors.UnsupportedError("x"))).toBe("not supported");
    expect(describe(new errors.SandboxIdleTimeoutError("x"))).toBe("sandbox ended");
    // Every code is handled: `code` narrows to never once all cases are listed.
    const exhaustive = (code: errors.SandboxErrorCode): number => {
      switch (code) {
        case "unknown":
        case "invalid":
        case "not_found":
        case "already_exists":
        case "timeout":
        case "sandbox_timeout":
        case "sandbox_idle_timeout":
        case "sandbox_terminated":
        case "client_closed":
        case "connection":
        case "authentication":
        case "command_timeout":
        case "quota_exceeded":
        case "tunnel":
        case "aborted":
        case "failed_precondition":
        case "unsupported":
        case "internal":
        case "filesystem":
        case "filesystem_not_found":
        case "filesystem_is_a_directory":
        case "filesystem_not_a_directory":
        case "filesystem_directory_not_empty":
        case "filesystem_path_already_exists":
        case "filesystem_permission":
        case "output_dropped":
        case "output_lost":
          return 1;
        default: {
          const unhandled: never = code;
          return unhandled;
        }
      }
    };
    expect(exhaustive(new errors.InternalError("x").code)).toBe(1);
    // A class's code is its own literal.
    const invalid: "invalid" = new errors.InvalidError("x").code;
    expect(invalid).toBe("invalid");
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
