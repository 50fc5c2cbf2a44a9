import {
  SandboxClient as CoreSandboxClient,
  type LocalImages,
  type LocalSandbox,
  type SandboxClientOptions,
} from "@sbx/core";
import { localFilesystems, localImages } from "@sbx/core/adapter";
import { connectClients } from "@sbx/core/connect";
import { nodeLocalFiles, nodeLocalImageFiles } from "./local-files.js";
import { nodeListenLocal } from "./local-tunnel.js";
import { nodeRawHttp } from "./raw-http-client.js";
import { createNodeTransport, type NodeTransportOptions } from "./transport.js";
import { nodeTunnelChannel } from "./tunnel-channel.js";

export interface NodeSandboxClientOptions extends SandboxClientOptions, NodeTransportOptions {}

/**
 * The sbx client for Node.js (its `images` also import local archives: `images.import(path)`). Endpoint and token default to `SBX_ENDPOINT` and `SBX_TOKEN`;
 * pass `{ transport }` to use another (e.g. `fake.transport` from `@sbx/testing`).
 */
export class SandboxClient extends CoreSandboxClient<LocalSandbox, LocalImages> {
  constructor(options: NodeSandboxClientOptions = {}) {
    super(options, {
      env: { endpoint: process.env.SBX_ENDPOINT || undefined, token: process.env.SBX_TOKEN || undefined },
      createClients: (endpoint) => connectClients(createNodeTransport(endpoint, options)),
      connectClients,
      localFilesystem: localFilesystems(nodeLocalFiles),
      localImages: localImages(nodeLocalImageFiles),
      localTunnel: nodeListenLocal,
      tunnelChannel: nodeTunnelChannel,
      createRawHttp: (endpoint) => (options.rawHttp === false ? undefined : nodeRawHttp(endpoint)),
    });
  }
}
