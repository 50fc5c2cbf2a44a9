// The conformance suite against the real server (local bubblewrap runtime) through
// @sbx/node, over each protocol the Node transport speaks. Output comes through the raw
// output stream except over gRPC, which keeps ReadOutput covered against the real server.
// The tunnel domain cases start servers of their own (with a tunnel domain), so one of the
// targets has them.
import * as sdk from "@sbx/node";
import { serveSandboxApp } from "@sbx/test-fixtures/sandbox-apps";
import { nodeWire } from "@sbx/test-fixtures/wire";
import { defineConformanceSuite, SERVER_KNOWN_DIFFERENCES, type TunnelDomainServers } from "@sbx/testing/conformance";
import { afterAll, beforeAll, describe, it } from "vitest";
import { imageStoreAvailable } from "./images/test-support/available.js";
import { RegistryImagePublisher } from "./images/test-support/conformance-images.js";
import { realServerAvailable, startTestServer, useTestServer } from "./test-support.js";

// The image cases pull test images from registries on loopback, which the image store's
// tools make and serve.
const available =
  (await realServerAvailable()) &&
  (await imageStoreAvailable("the real server's image cases", ["docker-registry", "skopeo", "htpasswd"]));

const t = { describe, it, beforeAll, afterAll };

/**
 * Servers with a tunnel domain whose sandboxes reach nothing beyond this machine (an egress
 * ceiling on a test range); their apps are Python programs in the sandboxes.
 */
const serverTunnelDomain: TunnelDomainServers = {
  wire: nodeWire,
  async start({ domain, scheme, connections }) {
    const server = await startTestServer({
      tunnelDomain: domain,
      tunnelScheme: scheme,
      network: { allow: ["198.18.0.0/15"] },
      ...(connections ? { connections } : {}),
    });
    return {
      url: server.url,
      token: server.token,
      serve: (sandbox, port, app) => serveSandboxApp(sandbox, port, app),
      async close() {
        await server.close();
        server.removeData();
      },
    };
  },
};

if (available) {
  describe("real server", () => {
    const server = useTestServer();
    // Test images for the image cases: built here, pushed to registries on loopback.
    const images = new RegistryImagePublisher();
    afterAll(() => images.close());
    for (const transport of [
      { label: "Connect over HTTP/2", options: { protocol: "connect", httpVersion: "2" }, tunnelDomain: true },
      { label: "gRPC, output through ReadOutput", options: { protocol: "grpc", rawHttp: false }, tunnelDomain: false },
      { label: "Connect over HTTP/1.1", options: { protocol: "connect", httpVersion: "1.1" }, tunnelDomain: false },
    ] as const) {
      defineConformanceSuite(t, {
        name: `node → real server (${transport.label})`,
        sdk,
        makeClient: () => new sdk.SandboxClient({ endpoint: server.url, token: server.token, ...transport.options }),
        endpoint: () => ({ url: server.url, token: server.token }),
        images,
        ...(transport.tunnelDomain ? { tunnelDomain: serverTunnelDomain } : {}),
        knownDifferences: SERVER_KNOWN_DIFFERENCES,
      });
    }
  });
}
