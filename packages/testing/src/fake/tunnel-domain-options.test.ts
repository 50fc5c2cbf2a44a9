// The fake's own tunnel domain options (createFakeServer's): what a tunnel domain does is the
// conformance suite's (conformance/cases/tunnel-domain*.ts), run against the fake and the server.
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { createFakeServer } from "../index.js";

describe("a tunnel domain on the fake", () => {
  it("a bad tunnel domain is an InvalidArgument error at creation", () => {
    for (const options of [
      { tunnelDomain: "*.example.com" },
      { tunnelDomain: "exa mple.com" },
      { tunnelDomain: "x.dev", tunnelPublicPort: 0 },
      { tunnelScheme: "http" as const },
    ]) {
      let caught: unknown;
      try {
        createFakeServer(options);
      } catch (error) {
        caught = error;
      }
      expect(caught, JSON.stringify(options)).toBeInstanceOf(ConnectError);
      expect((caught as ConnectError).code).toBe(Code.InvalidArgument);
    }
  });
});
