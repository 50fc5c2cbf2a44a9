// The conformance suite through @sbx/node against the fake server: in-process, and over a
// real port with each protocol the Node transport speaks.
import { createFakeServer } from "@sbx/testing";
import { defineConformanceSuite, FAKE_KNOWN_DIFFERENCES } from "@sbx/testing/conformance";
import { afterAll, beforeAll, describe, it } from "vitest";
import * as sdk from "./index.js";

const t = { describe, it, beforeAll, afterAll };

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
  { label: "Connect over HTTP/1.1", options: { protocol: "connect", httpVersion: "1.1" } },
  { label: "Connect over HTTP/2", options: { protocol: "connect", httpVersion: "2" } },
  { label: "gRPC over HTTP/2", options: { protocol: "grpc" } },
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
      knownDifferences: FAKE_KNOWN_DIFFERENCES,
    });
  });
}
