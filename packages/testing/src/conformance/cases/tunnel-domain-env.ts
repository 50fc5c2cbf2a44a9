/**
 * What the tunnel domain cases share: the names they use, and a server per group of cases
 * (started through the target's `tunnelDomain` capability) with sandboxes of this run.
 */
import type { CreateSandboxOptions, Sandbox } from "@sbx/core";
import type { Harness, SandboxClientLike, TestApi } from "../target.js";
import type {
  TestAppName,
  TunnelDomainServer,
  TunnelDomainServerOptions,
  TunnelDomainServers,
  WireClient,
} from "../tunnel-domain-target.js";

export const T = 60_000;
/** The names' domain; the servers are given it as a user might spell it (`DOMAIN_AS_GIVEN`). */
export const DOMAIN = "sbx.test";
const DOMAIN_AS_GIVEN = "SBX.Test.";
export const HTTP_PORT = 8000;
export const WS_PORT = 9000;
export const RAW_PORT = 8100;
/** A well-formed sandbox id no server has. */
export const NO_SANDBOX = "sb-00000000000000000000";

/** A port's open tunnel name `<port>-<id>.<domain>`, or its gateway's `<port>-<id>-auth.<domain>`. */
export const nameOf = (id: string, port: number, gateway = false): string =>
  `${port}-${id}${gateway ? "-auth" : ""}.${DOMAIN}`;

/** A server started for one group of cases: its API, a client of it, and sandboxes of this run. */
export interface DomainServer {
  readonly url: string;
  /** The API's port, which every sandbox name is served on. */
  readonly port: number;
  readonly token: string;
  readonly client: SandboxClientLike;
  readonly wire: WireClient;
  /** A sandbox of this run exposing `ports`, with the app `apps` names on each of those. */
  sandbox(
    ports: readonly number[],
    apps?: Readonly<Partial<Record<number, TestAppName>>>,
    options?: CreateSandboxOptions,
  ): Promise<Sandbox>;
}

/**
 * A server for the enclosing describe, started by the first of its cases to ask (not in a hook:
 * a start and its apps take a case's time) and closed after them, with what `prepare` adds.
 */
export function useDomainServer<E extends object>(
  t: TestApi,
  h: Harness,
  servers: TunnelDomainServers,
  options: Omit<TunnelDomainServerOptions, "domain">,
  prepare: (server: DomainServer) => Promise<E>,
): () => Promise<DomainServer & E> {
  let started: TunnelDomainServer | undefined;
  let client: SandboxClientLike | undefined;
  let ready: Promise<DomainServer & E> | undefined;
  const start = async () => {
    started = await servers.start({ domain: DOMAIN_AS_GIVEN, ...options });
    const server = started;
    const api = new h.sdk.SandboxClient({ endpoint: server.url, token: server.token });
    client = api;
    const domainServer: DomainServer = {
      url: server.url,
      port: Number(new URL(server.url).port),
      token: server.token,
      client: api,
      wire: servers.wire,
      async sandbox(ports, apps = {}, createOptions = {}) {
        const sb = await api.sandboxes.create({ app: h.app, ports: [...ports], ...createOptions });
        for (const [port, app] of Object.entries(apps)) if (app) await server.serve(sb, Number(port), app);
        return sb;
      },
    };
    return { ...domainServer, ...(await prepare(domainServer)) };
  };
  t.afterAll(async () => {
    await client?.close();
    await started?.close();
  });
  return () => {
    ready ??= start();
    return ready;
  };
}

/** The routing and request cases' server: `sb` (HTTP, WebSocket and request-reader apps), `other` (HTTP). */
export type MainEnv = () => Promise<DomainServer & { readonly sb: Sandbox; readonly other: Sandbox }>;
