// The conformance suite against the real server (local bubblewrap runtime) through
// @sbx/node, over each protocol the Node transport speaks. Output comes through the raw
// output stream except over gRPC, which keeps ReadOutput covered against the real server.
import * as sdk from "@sbx/node";
import { defineConformanceSuite, SERVER_KNOWN_DIFFERENCES } from "@sbx/testing/conformance";
import { afterAll, beforeAll, describe, it } from "vitest";
import { imageStoreAvailable } from "./images/test-support/available.js";
import { RegistryImagePublisher } from "./images/test-support/conformance-images.js";
import { realServerAvailable, useTestServer } from "./test-support.js";

// The image cases pull test images from registries on loopback, which the image store's
// tools make and serve.
const available =
  (await realServerAvailable()) &&
  (await imageStoreAvailable("the real server's image cases", ["docker-registry", "skopeo", "htpasswd"]));

const t = { describe, it, beforeAll, afterAll };

if (available) {
  describe("real server", () => {
    const server = useTestServer();
    // Test images for the image cases: built here, pushed to registries on loopback.
    const images = new RegistryImagePublisher();
    afterAll(() => images.close());
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
        images,
        knownDifferences: SERVER_KNOWN_DIFFERENCES,
      });
    }
  });
}
