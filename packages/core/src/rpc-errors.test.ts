import { Code, ConnectError } from "@connectrpc/connect";
import { OutputDroppedSchema } from "@sbx/proto";
import { encodeMessage, ImageErrorKind } from "@sbx/proto/wire";
import { describe, expect, it } from "vitest";
import {
  AbortedError,
  AuthenticationError,
  ConnectionError,
  FailedPreconditionError,
  InternalError,
  InvalidError,
  NotFoundError,
  OutputDroppedError,
  OutputLostError,
  QuotaExceededError,
  SandboxError,
  TimeoutError,
  UnsupportedError,
} from "./errors.js";
import { isTransient, toSandboxError } from "./rpc-errors.js";
import { RpcFailure } from "./rpc-failure.js";

describe("toSandboxError", () => {
  it("a stream reset by a dropped HTTP/2 connection is a transient ConnectionError", () => {
    const e = toSandboxError(
      new ConnectError("http/2 stream closed with error code CANCEL (0x8)", Code.Canceled),
      "reading stdout",
    );
    expect(e).toBeInstanceOf(ConnectionError);
    expect(isTransient(e)).toBe(true);
  });

  it("a server-side cancel with no transport cause stays an AbortError and is not retried", () => {
    const e = toSandboxError(new ConnectError("the operation was cancelled", Code.Canceled), "waiting");
    expect(e).toBeInstanceOf(AbortedError);
    expect(isTransient(e)).toBe(false);
  });

  it("maps codes to the public errors; only transport failures are transient", () => {
    expect(toSandboxError(new ConnectError("gone", Code.NotFound), "x")).toBeInstanceOf(NotFoundError);
    expect(isTransient(toSandboxError(new ConnectError("gone", Code.NotFound), "x"))).toBe(false);
    const reset = toSandboxError(new ConnectError("read ECONNRESET", Code.Unknown), "x");
    expect(isTransient(reset)).toBe(true);
    const aborted = toSandboxError(new ConnectError("aborted", Code.Aborted), "x");
    expect(aborted).toBeInstanceOf(ConnectionError);
    expect(isTransient(aborted)).toBe(true);
  });

  it("a fetch that failed before any answer is a transient ConnectionError in every browser", () => {
    // connect-web reports a rejected fetch as `unknown` with the browser's own message.
    for (const message of [
      "Failed to fetch",
      "NetworkError when attempting to fetch resource.",
      "Load failed",
      "fetch failed",
    ]) {
      const e = toSandboxError(ConnectError.from(new TypeError(message)), "create sandbox");
      expect(e, message).toBeInstanceOf(ConnectionError);
      expect(isTransient(e), message).toBe(true);
    }
  });

  it("a feature the server lacks (UNIMPLEMENTED) is an UnsupportedError, not retried", () => {
    const e = toSandboxError(new ConnectError("ports are not supported yet", Code.Unimplemented), "create sandbox");
    expect(e).toBeInstanceOf(UnsupportedError);
    expect(e).not.toBeInstanceOf(InternalError);
    expect(e.code).toBe("unsupported");
    expect(e.rpcStatus).toBe("unimplemented");
    expect(isTransient(e)).toBe(false);
  });

  it("an unknown failure that is not the connection's stays an InternalError", () => {
    const e = toSandboxError(new ConnectError("the handler threw", Code.Unknown), "x");
    expect(e).toBeInstanceOf(InternalError);
    expect(isTransient(e)).toBe(false);
  });

  it("dropped output is an OutputDroppedError naming the first kept offset, from either client", () => {
    const message = "bytes before offset 4096 of this stream were dropped";
    const fromConnect = toSandboxError(
      new ConnectError(message, Code.OutOfRange, undefined, [
        { desc: OutputDroppedSchema, value: { firstKeptOffset: 4096n } },
      ]),
      "reading stdout",
    );
    const fromWeb = toSandboxError(
      new RpcFailure(message, Code.OutOfRange, [
        { type: "sbx.v1.OutputDropped", value: encodeMessage("sbx.v1.OutputDropped", { firstKeptOffset: 4096n }) },
      ]),
      "reading stdout",
    );
    for (const e of [fromConnect, fromWeb]) {
      expect(e).toBeInstanceOf(OutputDroppedError);
      expect((e as OutputDroppedError).firstKeptOffset).toBe(4096);
      expect(e.code).toBe("output_dropped");
      expect(isTransient(e)).toBe(false);
    }
    // Without the detail, OUT_OF_RANGE stays what it was.
    expect(toSandboxError(new ConnectError("past the end", Code.OutOfRange), "x")).toBeInstanceOf(InvalidError);
  });

  it("output the server could not store is an OutputLostError, not retried", () => {
    const e = toSandboxError(new ConnectError("could not store", Code.DataLoss), "reading stdout");
    expect(e).toBeInstanceOf(OutputLostError);
    expect(isTransient(e)).toBe(false);
  });
});

describe("image failures (an ImageError detail)", () => {
  const failure = (code: number, kind: number, registry = "") =>
    new RpcFailure("the store said so", code as never, [
      { type: "sbx.v1.ImageError", value: encodeMessage("sbx.v1.ImageError", { kind, registry, reference: "r" }) },
    ]);

  it("become the typed errors the kind says, none of them retried", () => {
    const cases: [number, number, abstract new (...args: never[]) => Error, string][] = [
      [Code.NotFound, ImageErrorKind.NOT_FOUND, NotFoundError, "NotFoundError"],
      [Code.PermissionDenied, ImageErrorKind.AUTHENTICATION, AuthenticationError, "AuthenticationError"],
      [Code.Unavailable, ImageErrorKind.CONNECTION, ConnectionError, "ConnectionError"],
      [Code.DataLoss, ImageErrorKind.DIGEST_MISMATCH, SandboxError, "SandboxError"],
      [Code.InvalidArgument, ImageErrorKind.INVALID, InvalidError, "InvalidError"],
      [Code.Unimplemented, ImageErrorKind.UNSUPPORTED, UnsupportedError, "UnsupportedError"],
      [Code.ResourceExhausted, ImageErrorKind.QUOTA, QuotaExceededError, "QuotaExceededError"],
      [Code.FailedPrecondition, ImageErrorKind.IN_USE, FailedPreconditionError, "FailedPreconditionError"],
      [Code.DeadlineExceeded, ImageErrorKind.TIMEOUT, TimeoutError, "TimeoutError"],
    ];
    for (const [code, kind, ErrorClass, name] of cases) {
      const error = toSandboxError(failure(code, kind), "pull image x");
      expect(error, name).toBeInstanceOf(ErrorClass);
      expect(error.name, name).toBe(name);
      expect(error.message).toBe("pull image x: the store said so");
      expect(isTransient(error), name).toBe(false);
    }
    // A digest mismatch is not mistaken for lost output (DATA_LOSS alone means that).
    expect(toSandboxError(failure(Code.DataLoss, ImageErrorKind.DIGEST_MISMATCH), "x")).not.toBeInstanceOf(
      OutputLostError,
    );
  });

  it("keep the registry that refused, so a registry's no is never taken for the sbx token", () => {
    const refused = toSandboxError(failure(Code.PermissionDenied, ImageErrorKind.AUTHENTICATION, "ghcr.io"), "pull");
    expect(refused).toBeInstanceOf(AuthenticationError);
    expect((refused as AuthenticationError).registry).toBe("ghcr.io");
    const unreachable = toSandboxError(failure(Code.Unavailable, ImageErrorKind.CONNECTION, "127.0.0.1:5000"), "pull");
    expect((unreachable as ConnectionError).registry).toBe("127.0.0.1:5000");
    expect(isTransient(unreachable)).toBe(false);
    // The sbx server refusing the token: no registry.
    const token = toSandboxError(new ConnectError("missing or wrong bearer token", Code.Unauthenticated), "x");
    expect(token).toBeInstanceOf(AuthenticationError);
    expect((token as AuthenticationError).registry).toBeUndefined();
    // A plain UNAVAILABLE is the sbx server's: retried, no registry.
    const down = toSandboxError(new ConnectError("down", Code.Unavailable), "x");
    expect((down as ConnectionError).registry).toBeUndefined();
    expect(isTransient(down)).toBe(true);
  });

  it("an unknown kind leaves the status code to decide", () => {
    expect(toSandboxError(failure(Code.NotFound, 99), "x")).toBeInstanceOf(NotFoundError);
  });
});
