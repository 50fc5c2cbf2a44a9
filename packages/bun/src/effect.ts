/** @sbx/bun/effect — the Effect API of @sbx/core with a Bun transport Layer. */

import { DEFAULT_ENDPOINT, type SandboxClientOptions } from "@sbx/core";
import { withTunnelChannel } from "@sbx/core/adapter";
import { layer as coreLayer, type SbxConnection } from "@sbx/core/effect";
import type * as Layer from "effect/Layer";
import { bunEnv } from "./client.js";
import { type BunTransportOptions, createBunTransport } from "./transport.js";
import { bunTunnelChannel } from "./tunnel-channel.js";

export * from "@sbx/core/effect";

/** `SbxConnection` over Bun's `fetch`; endpoint and token default to SBX_ENDPOINT / SBX_TOKEN. */
export const layer = (
  options: Omit<SandboxClientOptions, "transport"> & BunTransportOptions = {},
): Layer.Layer<SbxConnection> => {
  const env = bunEnv();
  const endpoint = options.endpoint ?? env.endpoint ?? DEFAULT_ENDPOINT;
  const token = options.token ?? env.token;
  // sb.connect through the Effect API takes Bun's channel too (a plain upgrade, not a WebSocket).
  return coreLayer(withTunnelChannel(createBunTransport(endpoint, options), bunTunnelChannel), {
    ...options,
    endpoint,
    ...(token ? { token } : {}),
  });
};
