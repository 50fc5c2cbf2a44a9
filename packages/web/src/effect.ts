/** @sbx/web/effect — the Effect API of @sbx/core with a `fetch` transport Layer. */

import { DEFAULT_ENDPOINT, type SandboxClientOptions } from "@sbx/core";
import { layer as coreLayer, type SbxRpc } from "@sbx/core/effect";
import type * as Layer from "effect/Layer";
import { createWebTransport, type WebTransportOptions } from "./transport.js";

export * from "@sbx/core/effect";

/** `SbxRpc` over `fetch`; the endpoint defaults to `http://127.0.0.1:7420`, the token to none. */
export const layer = (
  options: Omit<SandboxClientOptions, "transport"> & Pick<WebTransportOptions, "fetch"> = {},
): Layer.Layer<SbxRpc> => {
  const { fetch, ...config } = options;
  const endpoint = config.endpoint ?? DEFAULT_ENDPOINT;
  return coreLayer(createWebTransport(endpoint, fetch ? { fetch } : {}), { ...config, endpoint });
};
