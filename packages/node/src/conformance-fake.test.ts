// The conformance suite through @sbx/node against the fake server: in-process, and over a
// real port with each protocol the Node transport speaks. The tunnel domain cases start fakes
// of their own (with a tunnel domain), so one of the targets has them.
import { servePortApp } from "@sbx/test-fixtures/port-apps";
import { nodeWire } from "@sbx/test-fixtures/wire";
import { createFakeServer } from "@sbx/testing";
import { defineConformanceSuite, FAKE_KNOWN_DIFFERENCES, type TunnelDomainServers } from "@sbx/testing/conformance";
import { afterAll, beforeAll, describe, it } from "vitest";
import * as sdk from "./index.js";

const t = { describe, it, beforeAll, afterAll };

/** Fakes with a tunnel domain, listening on loopback; their apps are port handlers. */
const fakeTunnelDomain: TunnelDomainServers = {
  wire: nodeWire,
  async start({ domain, scheme, connections }) {
    const token = "tunnel-domain-token";
    const fake = createFakeServer({ token, tunnelDomain: domain, tunnelScheme: scheme });
    const listener = await fake.listen(connections ? { connections } : {});
    return {
      url: listener.url,
      token,
      serve: async (_sandbox, port, app) => servePortApp(fake, port, app),
      close: () => fake.close(),
    };
  },
};

describe("fake, in-process transport", () => {
  const fake = createFakeServer();
  afterAll(() => fake.close());
  defineConformanceSuite(t, {
    name: "node → fake (in-process)",
    sdk,
    makeClient: () => new sdk.SandboxClient({ transport: fake.transport }),
    fake,
    knownDifferences: FAKE_KNOWN_DIFFERENCES,
  });
});

for (const transport of [
  { label: "Connect over HTTP/1.1", options: { protocol: "connect", httpVersion: "1.1" }, tunnelDomain: true },
  { label: "Connect over HTTP/2", options: { protocol: "connect", httpVersion: "2" }, tunnelDomain: false },
  { label: "gRPC over HTTP/2", options: { protocol: "grpc" }, tunnelDomain: false },
] as const) {
  describe(`fake over a port, ${transport.label}`, () => {
    const fake = createFakeServer({ token: "conformance-token" });
    let url = "";
    let close: () => Promise<void> = async () => {};
    beforeAll(async () => {
      ({ url, close } = await fake.listen());
    });
    afterAll(async () => {
      await close();
      await fake.close();
    });
    defineConformanceSuite(t, {
      name: `node → fake (${transport.label})`,
      sdk,
      makeClient: () => new sdk.SandboxClient({ endpoint: url, token: "conformance-token", ...transport.options }),
      fake,
      endpoint: () => ({ url, token: "conformance-token" }),
      ...(transport.tunnelDomain ? { tunnelDomain: fakeTunnelDomain } : {}),
      knownDifferences: FAKE_KNOWN_DIFFERENCES,
    });
  });
}
