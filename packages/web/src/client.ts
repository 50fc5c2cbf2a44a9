import { SandboxClient as CoreSandboxClient, type SandboxClientOptions } from "@sbx/core";
import { fetchRawHttp } from "@sbx/core/adapter";
import { fetchClients } from "./connect-fetch.js";
import { globalFetch } from "./fetch.js";
import type { WebTransportOptions } from "./transport.js";

export interface WebSandboxClientOptions extends SandboxClientOptions, WebTransportOptions {}

/**
 * The sbx client for browsers and web workers. There is no environment to read: the endpoint
 * defaults to `http://127.0.0.1:7420` (core's `DEFAULT_ENDPOINT`) and the token to none, so
 * pass both. The page's origin must be allowed by the server's CORS setting (any, by default).
 * Pass `{ transport }` to use another (e.g. `fake.transport` from `@sbx/testing`, or any
 * Connect transport wrapped with `withConnectClients` from `@sbx/core/connect`).
 */
export class SandboxClient extends CoreSandboxClient {
  constructor(options: WebSandboxClientOptions = {}) {
    const fetchImpl = options.fetch ?? globalFetch;
    super(options, {
      runtimeName: "@sbx/web (browsers have no TCP listener)",
      createClients: (endpoint) => fetchClients(endpoint, fetchImpl),
      createRawHttp: (endpoint) =>
        options.rawHttp === false ? undefined : fetchRawHttp(endpoint, fetchImpl as typeof fetch),
    });
  }
}
