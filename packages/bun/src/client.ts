import {
  SandboxClient as CoreSandboxClient,
  type LocalImages,
  type LocalSandbox,
  type SandboxClientOptions,
} from "@sbx/core";
import { fetchRawHttp, localFilesystems, localImages } from "@sbx/core/adapter";
import { connectClients } from "@sbx/core/connect";
import { bunLocalFiles } from "./local-files.js";
import { bunListenLocal } from "./local-tunnel.js";
import { type BunTransportOptions, createBunTransport } from "./transport.js";
import { bunTunnelChannel } from "./tunnel-channel.js";

export interface BunSandboxClientOptions extends SandboxClientOptions, BunTransportOptions {}

/**
 * The sbx client for Bun. Endpoint and token default to `SBX_ENDPOINT` and `SBX_TOKEN`
 * (`Bun.env`, which also holds what Bun loaded from `.env` files); pass `{ transport }` to use
 * another (e.g. `fake.transport` from `@sbx/testing`).
 */
export class SandboxClient extends CoreSandboxClient<LocalSandbox, LocalImages> {
  constructor(options: BunSandboxClientOptions = {}) {
    super(options, {
      env: bunEnv(),
      createClients: (endpoint) => connectClients(createBunTransport(endpoint, options)),
      connectClients,
      localFilesystem: localFilesystems(bunLocalFiles),
      localImages: localImages(bunLocalFiles),
      localTunnel: bunListenLocal,
      tunnelChannel: bunTunnelChannel,
      createRawHttp: (endpoint) => (options.rawHttp === false ? undefined : fetchRawHttp(endpoint, options.fetch)),
    });
  }
}

/** `SBX_ENDPOINT` / `SBX_TOKEN`, empty values counting as unset. */
export function bunEnv(): { endpoint: string | undefined; token: string | undefined } {
  return { endpoint: Bun.env.SBX_ENDPOINT || undefined, token: Bun.env.SBX_TOKEN || undefined };
}
