// Features the server does not have yet reach the SDK as UnsupportedError (UNIMPLEMENTED on
// the wire), not as an InternalError the caller cannot tell from a server bug.
import { SandboxClient, UnsupportedError } from "@sbx/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errorOf, realServerAvailable, useTestServer } from "./test-support.js";

const available = await realServerAvailable();

if (available) {
  describe("what the server does not have yet", () => {
    const server = useTestServer();
    let client: SandboxClient;
    beforeAll(() => {
      client = new SandboxClient({ endpoint: server.url, token: server.token });
    });
    afterAll(async () => {
      await client.close();
    });

    it("on a running sandbox: connect and tunnel are UnsupportedError", async () => {
      await using sb = await client.sandboxes.create({ app: "unsupported" });
      // Not built on any target yet: refused by the client itself.
      for (const call of [() => sb.connect(5432), () => sb.tunnel(5432)]) {
        expect(await errorOf(call())).toBeInstanceOf(UnsupportedError);
      }
    });

    it("tokens are real: 401 without a token, 502 naming the port where nothing listens", async () => {
      await using sb = await client.sandboxes.create({ app: "unsupported" });
      expect(await sb.tunnels()).toEqual({}); // created without ports
      const { url, token } = await sb.createConnectToken({ userMetadata: { user: "ada" } });
      expect((await fetch(url)).status).toBe(401);
      expect((await fetch(url, { headers: { authorization: "Bearer forged" } })).status).toBe(401);
      const answer = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
      expect(answer.status).toBe(502);
      expect(await answer.text()).toMatch(/port 8080 of sandbox .* nothing listens there/);
      const svc = await sb.service(3000, { expiresInMs: 60_000 });
      expect((await fetch(svc.url)).status).toBe(401);
      expect((await svc.fetch("/")).status).toBe(502);
    });
  });
}
