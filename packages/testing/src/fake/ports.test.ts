// The fake's port registry as users script it, and what needs a real listener without one.
import { Probe, SandboxClient } from "@sbx/core";
import { afterEach, describe, expect, it } from "vitest";
import { createFakeServer, type FakeServer } from "../index.js";

describe("fake ports", () => {
  let fake: FakeServer;
  afterEach(() => fake.close());

  it("onPort refuses a bad port or handler; undefined stops a port listening", async () => {
    fake = createFakeServer();
    expect(() => fake.onPort(0, () => new Response())).toThrow(/invalid port 0/);
    expect(() => fake.onPort(80, "nope" as never)).toThrow(TypeError);
    fake.onPort(8000, () => new Response("hi"));
    const client = new SandboxClient({ transport: fake.transport });
    const sb = await client.sandboxes.create({ readinessProbe: Probe.tcp(8000) });
    await sb.waitUntilReady({ timeoutMs: 10_000 });
    fake.onPort(8000, undefined);
    const later = await client.sandboxes.create({ readinessProbe: Probe.tcp(8000) });
    await expect(later.waitUntilReady({ timeoutMs: 200 })).rejects.toMatchObject({ code: "timeout" });
    await client.close();
  });

  it("in-process, tunnels and tokens say to listen first", async () => {
    fake = createFakeServer();
    const client = new SandboxClient({ transport: fake.transport });
    const sb = await client.sandboxes.create({ ports: [8000] });
    await expect(sb.tunnels()).rejects.toMatchObject({
      code: "failed_precondition",
      message: expect.stringMatching(/call fake.listen\(\) first/),
    });
    await expect(sb.createConnectToken()).rejects.toMatchObject({ code: "failed_precondition" });
    await client.close();
  });

  it("a tunnel's listener closes with its sandbox", async () => {
    fake = createFakeServer();
    await fake.listen();
    fake.onPort(8000, () => new Response("hi"));
    // In-process calls; the tunnel itself is a real listener.
    const client = new SandboxClient({ transport: fake.transport });
    const sb = await client.sandboxes.create({ ports: [8000] });
    const tunnel = (await sb.tunnels())[8000];
    expect(await (await fetch(tunnel?.url ?? "")).text()).toBe("hi");
    await sb.terminate({ wait: true });
    await expect(fetch(tunnel?.url ?? "")).rejects.toThrow();
    await client.close();
  });
});
