/** @sbx/deno/effect — the Effect API of @sbx/core with a transport over Deno's fetch. */

import type { SandboxClientOptions } from "@sbx/core";
import { withTunnelChannel } from "@sbx/core/adapter";
import { layer as coreLayer, type SbxConnection } from "@sbx/core/effect";
import type * as Layer from "effect/Layer";
import { readEnv } from "./deno-api.ts";
import { createDenoTransport, type DenoTransportOptions } from "./transport.ts";
import { denoTunnelChannel } from "./tunnel-channel.ts";

export * from "@sbx/core/effect";

/** `SbxConnection` over Deno's `fetch`; endpoint and token default to SBX_ENDPOINT / SBX_TOKEN. */
export const layer = (
  options: Omit<SandboxClientOptions, "transport"> & DenoTransportOptions = {},
): Layer.Layer<SbxConnection> => {
  const endpoint = options.endpoint ?? readEnv("SBX_ENDPOINT") ?? "http://127.0.0.1:7420";
  const token = options.token ?? readEnv("SBX_TOKEN");
  // sb.connect through the Effect API takes Deno's channel too (a plain upgrade, not a WebSocket).
  return coreLayer(withTunnelChannel(createDenoTransport(endpoint, options), denoTunnelChannel), {
    ...options,
    endpoint,
    ...(token ? { token } : {}),
  });
};
