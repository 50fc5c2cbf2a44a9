// `sb.service(port).fetch` (core's ServiceUrl) against the fake's gateway: the token is asked
// for again before it expires (within the last 20% of its life), never after, and requests keep
// passing. The clock is vitest's (Date only), shared by the client and the fake's tokens.
import { SandboxClient } from "@sbx/core";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createFakeServer, type FakeServer } from "../index.js";

describe("service URLs renew their token before it expires", () => {
  let fake: FakeServer;
  afterEach(async () => {
    vi.useRealTimers();
    await fake.close();
  });

  it("fetch uses a new token from 80% of the old one's life on, while the old one is still valid", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(1_800_000_000_000);
    fake = createFakeServer();
    await fake.listen();
    fake.onPort(3000, () => new Response("ok"));
    const client = new SandboxClient({ transport: fake.transport });
    const sb = await client.sandboxes.create();
    const issued = () => fake.calls.filter((c) => c.method === "CreateServiceToken").length;

    const svc = await sb.service(3000, { expiresInMs: 10_000 });
    const first = await svc.token();
    expect(issued()).toBe(1);
    vi.setSystemTime(1_800_000_007_000);
    expect(await (await svc.fetch("/a")).text()).toBe("ok");
    expect(await svc.token()).toBe(first);
    expect(issued()).toBe(1);

    vi.setSystemTime(1_800_000_008_500);
    // The old token still opens the port, yet fetch has already moved on to a new one.
    expect((await fetch(svc.url, { headers: { authorization: `Bearer ${first}` } })).status).toBe(200);
    expect(await (await svc.fetch("/b")).text()).toBe("ok");
    expect(issued()).toBe(2);
    const second = await svc.token();
    expect(second).not.toBe(first);

    vi.setSystemTime(1_800_000_011_000);
    expect((await fetch(svc.url, { headers: { authorization: `Bearer ${first}` } })).status).toBe(401);
    expect(await (await svc.fetch("/c")).text()).toBe("ok");
    expect(await svc.token()).toBe(second);
    await client.close();
  });
});
