/** @sbx/node/effect — the Effect API of @sbx/core with a Node transport Layer. */

import type { SandboxClientOptions } from "@sbx/core";
import { layer as coreLayer, type SbxConnection } from "@sbx/core/effect";
import type * as Layer from "effect/Layer";
import { createNodeTransport, type NodeTransportOptions } from "./transport.js";

export * from "@sbx/core/effect";

/** `SbxConnection` over Node's HTTP stack; endpoint and token default to SBX_ENDPOINT / SBX_TOKEN. */
export const layer = (
  options: Omit<SandboxClientOptions, "transport"> & NodeTransportOptions = {},
): Layer.Layer<SbxConnection> => {
  const endpoint = options.endpoint ?? (process.env.SBX_ENDPOINT || "http://127.0.0.1:7420");
  const token = options.token ?? (process.env.SBX_TOKEN || undefined);
  return coreLayer(createNodeTransport(endpoint, options), { ...options, endpoint, ...(token ? { token } : {}) });
};
