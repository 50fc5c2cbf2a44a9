// Features the server does not have yet reach the SDK as UnsupportedError (UNIMPLEMENTED on
// the wire), not as an InternalError the caller cannot tell from a server bug.
import { Probe, SandboxClient, UnsupportedError } from "@sbx/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errorOf, realServerAvailable, useTestServer } from "./test-support.js";

const available = await realServerAvailable();

if (available) {
  describe("unsupported create options", () => {
    const server = useTestServer();
    let client: SandboxClient;
    beforeAll(() => {
      client = new SandboxClient({ endpoint: server.url, token: server.token });
    });
    afterAll(async () => {
      await client.close();
    });

    it.each([
      ["ports", { ports: [8080] }],
      ["cidrAllowlist", { cidrAllowlist: ["10.0.0.0/8"] }],
      ["a TCP readinessProbe", { readinessProbe: Probe.tcp(8080) }],
    ])("%s is an UnsupportedError with code unsupported", async (_, options) => {
      const error = await errorOf(client.sandboxes.create({ app: "unsupported", ...options }));
      expect(error).toBeInstanceOf(UnsupportedError);
      expect((error as UnsupportedError).code).toBe("unsupported");
      expect((error as UnsupportedError).rpcStatus).toBe("unimplemented");
    });

    it("changing a running sandbox's network policy is an UnsupportedError", async () => {
      await using sb = await client.sandboxes.create({ app: "unsupported" });
      const error = await errorOf(sb.update({ blockNetwork: true }));
      expect(error).toBeInstanceOf(UnsupportedError);
      expect((error as UnsupportedError).rpcStatus).toBe("unimplemented");
    });
  });
}
