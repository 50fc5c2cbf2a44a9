// A failed call that shows the endpoint is not an sbx server becomes a ConnectionError naming
// the endpoint, not retried; an sbx server's own errors keep their meaning.
import { encodeMessage, ImageErrorKind } from "@sbx/proto/wire";
import { describe, expect, it } from "vitest";
import { ConnectionError, NotFoundError } from "./errors.js";
import { isTransient, toSandboxError } from "./rpc-errors.js";
import { Code, RpcFailure } from "./rpc-failure.js";

const ENDPOINT = "http://127.0.0.1:9/wrong/prefix";

describe("not an sbx server", () => {
  it("a bare 404 (no Connect error body) is a ConnectionError naming the endpoint, not retried", () => {
    const error = toSandboxError(new RpcFailure("HTTP 404", Code.Unimplemented), "get sandbox sb-1", ENDPOINT);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error.message).toContain(`this is not an sbx server at ${ENDPOINT}`);
    expect(error.message).toContain("HTTP 404");
    expect(isTransient(error)).toBe(false);
  });

  it("a TLS handshake against a plain server is one too, however deep the TLS error is", () => {
    const tls = new Error("write EPROTO 40CD:error:0A00010B:SSL routines::wrong version number");
    const fetchFailure = new TypeError("fetch failed", { cause: tls });
    const error = toSandboxError(fetchFailure, "get sandbox sb-1", "https://127.0.0.1:7420");
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error.message).toContain("this is not an sbx server at https://127.0.0.1:7420");
    expect(error.message).toContain("wrong version number");
  });

  it("an sbx server's own 404s and unimplemented errors keep their meaning", () => {
    const notFound = toSandboxError(new RpcFailure("sandbox sb-1 not found", Code.NotFound), "get", ENDPOINT);
    expect(notFound).toBeInstanceOf(NotFoundError);
    const unknownMethod = toSandboxError(new RpcFailure("no method /x on this sbx server", Code.Unimplemented), "x");
    expect(unknownMethod.message).not.toContain("not an sbx server");
  });

  it("an sbx server's error about a registry's TLS failure is that registry's ConnectionError", () => {
    // The server reached its sbx client fine; the registry it pulls from is plain HTTP.
    const registry = "[::ffff:127.0.0.1]:5000";
    const detail = { kind: ImageErrorKind.CONNECTION, registry, reference: `${registry}/x:1` };
    const failure = new RpcFailure(
      `could not reach registry ${registry} (https://[::ffff:7f00:1]:5000): ERR_SSL_WRONG_VERSION_NUMBER`,
      Code.Unavailable,
      [{ type: "sbx.v1.ImageError", value: encodeMessage("sbx.v1.ImageError", detail) }],
    );
    const error = toSandboxError(failure, "pull image", ENDPOINT);
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error.message).not.toContain("not an sbx server");
    expect((error as ConnectionError).registry).toBe(registry);
  });
});
