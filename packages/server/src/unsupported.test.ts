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
      ["a TCP readinessProbe", { readinessProbe: Probe.tcp(8080) }],
    ])("%s is an UnsupportedError with code unsupported", async (_, options) => {
      const error = await errorOf(client.sandboxes.create({ app: "unsupported", ...options }));
      expect(error).toBeInstanceOf(UnsupportedError);
      expect((error as UnsupportedError).code).toBe("unsupported");
      expect((error as UnsupportedError).rpcStatus).toBe("unimplemented");
    });

    it("on a running sandbox: tunnels and tokens are UnsupportedError; connect and tunnel too", async () => {
      await using sb = await client.sandboxes.create({ app: "unsupported" });
      for (const [what, call] of [
        ["tunnels", () => sb.tunnels()],
        ["createConnectToken", () => sb.createConnectToken()],
        ["service", () => sb.service(3000)],
      ] as const) {
        const error = await errorOf(call());
        expect(error, what).toBeInstanceOf(UnsupportedError);
        expect((error as UnsupportedError).rpcStatus, what).toBe("unimplemented");
      }
      // Not built on any target yet: refused by the client itself.
      for (const call of [() => sb.connect(5432), () => sb.tunnel(5432)]) {
        expect(await errorOf(call())).toBeInstanceOf(UnsupportedError);
      }
    });
  });
}
