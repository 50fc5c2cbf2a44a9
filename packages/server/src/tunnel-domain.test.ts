// `sbx server --tunnel-domain` as users start it (the CLI's build): the flags reach the server,
// whose sandbox ports are then host names on its own port beside the API. What a tunnel domain
// does (routing, the gateway, cookies, what reaches an app, the hosted requests' budget) is the
// conformance suite's (cases/tunnel-domain*.ts), run against the server and the fake alike.
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SandboxClient } from "@sbx/node";
import { serveSandboxApp } from "@sbx/test-fixtures/sandbox-apps";
import { nodeWire } from "@sbx/test-fixtures/wire";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { realServerAvailable, startCliServer } from "./test-support.js";

const available = await realServerAvailable();

if (available) {
  describe("sbx server --tunnel-domain", () => {
    const dataDir = mkdtempSync(join(tmpdir(), "sbx-tunnel-domain-"));
    let child: ChildProcess;
    let url: string;
    let client: SandboxClient;
    beforeAll(async () => {
      // Sandboxes reaching nothing beyond this machine; the domain spelt as a user might.
      ({ child, url } = await startCliServer(dataDir, {
        args: ["--tunnel-domain", "SBX.test.", "--tunnel-scheme", "http", "--net-allow", "198.18.0.0/15"],
      }));
      client = new SandboxClient({ endpoint: url, token: "t" });
    });
    afterAll(async () => {
      await client?.close();
      child?.kill("SIGTERM");
      if (child && child.exitCode === null) await new Promise((resolve) => child.once("exit", resolve));
      rmSync(dataDir, { recursive: true, force: true });
    });

    it("tunnels are names under the domain on the server's own port, reaching the app; the API answers beside them", async () => {
      const port = Number(new URL(url).port);
      await using sb = await client.sandboxes.create({ ports: [8000], blockNetwork: true });
      await serveSandboxApp(sb, 8000, "http-echo");
      const name = `8000-${sb.id}.sbx.test`;
      expect((await sb.tunnels())[8000]).toEqual({ host: name, port, url: `http://${name}:${port}` });
      const answer = await nodeWire.request(`http://${name}:${port}/hello`);
      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.text)).toMatchObject({ sandboxId: sb.id, path: "/hello", host: `${name}:${port}` });
      const { url: tokenUrl } = await sb.createConnectToken({ port: 8000 });
      expect(tokenUrl).toBe(`http://8000-${sb.id}-auth.sbx.test:${port}`);
      const listImages = await nodeWire.request(`${url}/sbx.v1.ImageService/ListImages`, {
        method: "POST",
        host: "sbx.test",
        headers: { "content-type": "application/json", authorization: "Bearer t" },
        body: "{}",
      });
      expect(listImages.status).toBe(200);
    });
  });
}
