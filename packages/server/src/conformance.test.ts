// The conformance suite against the real server (local bubblewrap runtime) through
// @sbx/node, over each protocol the Node transport speaks. Output comes through the raw
// output stream except over gRPC, which keeps ReadOutput covered against the real server.
import * as sdk from "@sbx/node";
import { defineConformanceSuite, SERVER_KNOWN_DIFFERENCES, type TestImageSource } from "@sbx/testing/conformance";
import { afterAll, beforeAll, describe, it } from "vitest";
import { realServerAvailable, useTestServer } from "./test-support.js";

const available = await realServerAvailable();

/**
 * The server has no image store wired in yet, so there is no registry its image cases could
 * pull test images from: they run, and fail (SERVER_KNOWN_DIFFERENCES says so). Once the store
 * is wired, this becomes a loopback registry the tests push their images to.
 */
const noTestRegistry: TestImageSource = {
  publish: async () => {
    throw new Error("no test registry for the sbx server: it has no image store wired in yet");
  },
};
const t = { describe, it, beforeAll, afterAll };

if (available) {
  describe("real server", () => {
    const server = useTestServer();
    for (const transport of [
      { label: "Connect over HTTP/2", options: { protocol: "connect", httpVersion: "2" } },
      { label: "gRPC, output through ReadOutput", options: { protocol: "grpc", rawHttp: false } },
      { label: "Connect over HTTP/1.1", options: { protocol: "connect", httpVersion: "1.1" } },
    ] as const) {
      defineConformanceSuite(t, {
        name: `node → real server (${transport.label})`,
        sdk,
        makeClient: () => new sdk.SandboxClient({ endpoint: server.url, token: server.token, ...transport.options }),
        endpoint: () => ({ url: server.url, token: server.token }),
        images: noTestRegistry,
        knownDifferences: SERVER_KNOWN_DIFFERENCES,
      });
    }
  });
}
