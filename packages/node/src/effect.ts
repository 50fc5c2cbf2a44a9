/** @sbx/node/effect — the Effect API of @sbx/core with a Node transport Layer. */

import type { SandboxClientOptions } from "@sbx/core";
import { withTunnelChannel } from "@sbx/core/adapter";
import { layer as coreLayer, type SbxConnection } from "@sbx/core/effect";
import type * as Layer from "effect/Layer";
import { createNodeTransport, type NodeTransportOptions } from "./transport.js";
import { nodeTunnelChannel } from "./tunnel-channel.js";

export * from "@sbx/core/effect";

/** `SbxConnection` over Node's HTTP stack; endpoint and token default to SBX_ENDPOINT / SBX_TOKEN. */
export const layer = (
  options: Omit<SandboxClientOptions, "transport"> & NodeTransportOptions = {},
): Layer.Layer<SbxConnection> => {
  const endpoint = options.endpoint ?? (process.env.SBX_ENDPOINT || "http://127.0.0.1:7420");
  const token = options.token ?? (process.env.SBX_TOKEN || undefined);
  // sb.connect through the Effect API takes Node's channel too (a plain upgrade, not a WebSocket).
  return coreLayer(withTunnelChannel(createNodeTransport(endpoint, options), nodeTunnelChannel), {
    ...options,
    endpoint,
    ...(token ? { token } : {}),
  });
};
