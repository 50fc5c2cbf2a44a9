import {
  SandboxClient as CoreSandboxClient,
  type LocalImages,
  type LocalSandbox,
  type SandboxClientOptions,
} from "@sbx/core";
import { fetchRawHttp, localFilesystems, localImages } from "@sbx/core/adapter";
import { connectClients } from "@sbx/core/connect";
import { readEnv } from "./deno-api.ts";
import { denoLocalFiles } from "./local-files.ts";
import { denoListenLocal } from "./local-tunnel.ts";
import { createDenoTransport, type DenoTransportOptions } from "./transport.ts";
import { denoTunnelChannel } from "./tunnel-channel.ts";

export interface DenoSandboxClientOptions extends SandboxClientOptions, DenoTransportOptions {}

/**
 * The sbx client for Deno. Endpoint and token default to `SBX_ENDPOINT` and `SBX_TOKEN` (when
 * Deno may read them: `--allow-env`); pass `{ transport }` to use another (e.g. `fake.transport`
 * from `@sbx/testing`).
 */
export class SandboxClient extends CoreSandboxClient<LocalSandbox, LocalImages> {
  constructor(options: DenoSandboxClientOptions = {}) {
    super(options, {
      env: { endpoint: readEnv("SBX_ENDPOINT"), token: readEnv("SBX_TOKEN") },
      createClients: (endpoint) => connectClients(createDenoTransport(endpoint, options)),
      connectClients,
      localFilesystem: localFilesystems(denoLocalFiles),
      localImages: localImages(denoLocalFiles),
      localTunnel: denoListenLocal,
      tunnelChannel: denoTunnelChannel,
      createRawHttp: (endpoint) =>
        options.rawHttp === false
          ? undefined
          : fetchRawHttp(endpoint, options.fetch ?? ((input, init) => globalThis.fetch(input, init))),
    });
  }
}
