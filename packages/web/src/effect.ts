/** @sbx/web/effect — the Effect API of @sbx/core with @sbx/web's own Connect-over-`fetch` clients. */

import { DEFAULT_ENDPOINT, type SandboxClientOptions } from "@sbx/core";
import { clientsLayer } from "@sbx/core/adapter";
import type { SbxConnection } from "@sbx/core/effect";
import type * as Layer from "effect/Layer";
import { fetchClients } from "./connect-fetch.js";
import { type FetchFunction, globalFetch } from "./fetch.js";

export * from "@sbx/core/effect";

/** `SbxConnection` over `fetch`; the endpoint defaults to `http://127.0.0.1:7420`, the token to none. */
export const layer = (
  options: Omit<SandboxClientOptions, "transport"> & { readonly fetch?: FetchFunction } = {},
): Layer.Layer<SbxConnection> => {
  const { fetch, ...config } = options;
  const endpoint = config.endpoint ?? DEFAULT_ENDPOINT;
  return clientsLayer(fetchClients(endpoint, fetch ?? globalFetch), { ...config, endpoint });
};
