/**
 * A tunnel domain (browser-safe): with a wildcard DNS name `*.<domain>` pointing at the server,
 * sandbox ports are reached by host name on the API's own port instead of through a listener
 * each. `<port>-<sandbox id>.<domain>` is the open tunnel to an exposed port;
 * `<port>-<sandbox id>-auth.<domain>` is the token gateway (connect tokens, service URLs) in
 * front of a port. Each name is an origin of its own in browsers, so host-only cookies (the
 * gateway's token cookie, an app's own) and same-origin rules keep sandboxes and ports apart,
 * where listeners on one host share all their cookies. One wildcard certificate covers every
 * name (one label under the domain). This module makes those names and reads them back; the
 * front door that acts on them is host-router.ts.
 */
import { invalid } from "../validation.js";

/** What clients use to reach the names: https (a TLS proxy in front of the server) or http. */
export type TunnelScheme = "https" | "http";

/** Which of a port's names: the open tunnel (exposed ports) or the token gateway. */
export type TunnelHostKind = "tunnel" | "gateway";

export interface TunnelDomainOptions {
  /** The DNS name whose subdomains are sandbox hosts (`example.com` for `*.example.com`). */
  readonly domain: string;
  /** Default "https": the server speaks plain HTTP, so a TLS proxy is expected in front. */
  readonly scheme?: TunnelScheme | undefined;
  /**
   * The port clients connect to (the URLs name it unless it is the scheme's default). Default:
   * 443 for https (the proxy's); for http, the API's own port (clients reach the server itself).
   */
  readonly publicPort?: number | undefined;
}

/** What a request's host names, under a tunnel domain. */
export type TunnelHostMatch =
  /** Not a sandbox's name (the domain itself, another name under it, any other host): the API's. */
  | { readonly kind: "elsewhere" }
  /** A sandbox's name by its shape (a first label starting with digits and a hyphen) that is not well formed. */
  | { readonly kind: "malformed"; readonly reason: string }
  | {
      readonly kind: "sandbox";
      readonly route: TunnelHostKind;
      readonly sandboxId: string;
      readonly port: number;
    };

/** The gateway's names end with this (a sandbox id never does: its last part has no hyphen). */
const GATEWAY_SUFFIX = "-auth";
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
/** A sandbox host's single label: `<port>-<sandbox id>` (the port without leading zeros). */
const SANDBOX_LABEL = /^([1-9][0-9]{0,4})-([a-z0-9](?:[a-z0-9-]*[a-z0-9])?)$/;
/** DNS names are at most 253 characters; a sandbox's label (at most 63) and its dot come first. */
export const MAX_TUNNEL_DOMAIN_LENGTH = 253 - 64;
const ELSEWHERE: TunnelHostMatch = { kind: "elsewhere" };

/** What is wrong with `domain` as a tunnel domain (a DNS name, not an address), or undefined. */
export function tunnelDomainProblem(domain: string): string | undefined {
  const said = JSON.stringify(domain);
  if (typeof domain !== "string" || domain === "") return "the tunnel domain is empty";
  if (domain.startsWith("*.")) {
    return `tunnel domain ${said}: give the domain without "*." (sandbox hosts are <port>-<sandbox id>.<domain>)`;
  }
  const name = (domain.endsWith(".") ? domain.slice(0, -1) : domain).toLowerCase();
  if (name.length > MAX_TUNNEL_DOMAIN_LENGTH) {
    return `tunnel domain ${said} is longer than ${MAX_TUNNEL_DOMAIN_LENGTH} characters (its sandbox host names would not fit in DNS's 253)`;
  }
  const labels = name.split(".");
  if (!labels.every((label) => LABEL.test(label))) {
    return `tunnel domain ${said} is not a DNS name (dot-separated labels of letters, digits and inner hyphens, 1 to 63 characters each)`;
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1] as string)) {
    return `tunnel domain ${said} is an address, not a DNS name`;
  }
  return undefined;
}

/** A checked tunnel domain: makes its sandboxes' host names and URLs, and reads a request's host. */
export class TunnelDomain {
  /** In lower case, without a trailing dot. */
  readonly name: string;
  readonly scheme: TunnelScheme;
  /** undefined: the scheme's default for https, the API's own port for http (see TunnelDomainOptions). */
  readonly publicPort: number | undefined;

  /** Throws an InvalidArgument ConnectError naming what is wrong. */
  constructor(options: TunnelDomainOptions) {
    const problem = tunnelDomainProblem(options.domain);
    if (problem) throw invalid(problem);
    const scheme = options.scheme ?? "https";
    if (scheme !== "https" && scheme !== "http") {
      throw invalid(`the tunnel scheme must be "https" or "http", got ${JSON.stringify(scheme)}`);
    }
    const port = options.publicPort;
    if (port !== undefined && !(Number.isInteger(port) && port >= 1 && port <= 65_535)) {
      throw invalid(`the tunnel public port must be a whole number from 1 to 65535, got ${port}`);
    }
    this.name = (options.domain.endsWith(".") ? options.domain.slice(0, -1) : options.domain).toLowerCase();
    this.scheme = scheme;
    this.publicPort = port;
  }

  /** The host name of `port` of `sandboxId`, for the open tunnel or the token gateway. */
  hostName(kind: TunnelHostKind, sandboxId: string, port: number): string {
    const label = `${port}-${sandboxId}${kind === "gateway" ? GATEWAY_SUFFIX : ""}`;
    const read = this.match(`${label}.${this.name}`);
    // (Sandbox ids are the engine's: lower-case letters and digits after "sb-".)
    if (read.kind !== "sandbox" || read.sandboxId !== sandboxId || read.route !== kind) {
      throw new Error(`sandbox id ${JSON.stringify(sandboxId)} cannot be part of a host name`);
    }
    return `${label}.${this.name}`;
  }

  /** Where clients reach `host`: the port they connect to and the URL (no port when it is the scheme's default). */
  endpoint(host: string, apiPort: number | undefined): { port: number; url: string } {
    const fallback = this.scheme === "https" ? 443 : apiPort;
    const port = this.publicPort ?? fallback;
    if (port === undefined) throw new Error("the server is not listening yet: its port is not known");
    const usual = this.scheme === "https" ? 443 : 80;
    return { port, url: `${this.scheme}://${host}${port === usual ? "" : `:${port}`}` };
  }

  /**
   * What `authority` (a Host header's value or an HTTP/2 :authority) names. Case does not
   * matter, a trailing dot and a port are ignored (the port clients used is the proxy's
   * business). Only a first label that starts with digits and a hyphen claims a sandbox, so
   * other names under the domain (`api.<domain>`) still reach the API.
   */
  match(authority: string): TunnelHostMatch {
    let host = authority.toLowerCase();
    if (host.startsWith("[")) return ELSEWHERE; // an IPv6 address
    const colon = host.lastIndexOf(":");
    const port = colon === -1 ? undefined : host.slice(colon + 1);
    if (colon !== -1) host = host.slice(0, colon);
    if (host.endsWith(".")) host = host.slice(0, -1);
    if (!host.endsWith(`.${this.name}`)) return ELSEWHERE;
    const sub = host.slice(0, -(this.name.length + 1));
    if (!/^[0-9]+-/.test(sub)) return ELSEWHERE;
    const expected = `expected <port>-<sandbox id>.${this.name} or <port>-<sandbox id>${GATEWAY_SUFFIX}.${this.name}`;
    if (port !== undefined && !/^[0-9]{0,5}$/.test(port)) {
      return { kind: "malformed", reason: `the host's port is not a number` };
    }
    const parts = SANDBOX_LABEL.exec(sub);
    if (!parts || sub.length > 63 || Number(parts[1]) > 65_535) {
      return { kind: "malformed", reason: `not a sandbox host name: ${expected}` };
    }
    const name = parts[2] as string;
    const gateway = name.endsWith(GATEWAY_SUFFIX) && name.length > GATEWAY_SUFFIX.length;
    return {
      kind: "sandbox",
      route: gateway ? "gateway" : "tunnel",
      sandboxId: gateway ? name.slice(0, -GATEWAY_SUFFIX.length) : name,
      port: Number(parts[1]),
    };
  }
}

/** How the sbx server's and the fake's options say it (`tunnelDomain`, `tunnelScheme`, `tunnelPublicPort`). */
export interface TunnelDomainSettings {
  readonly tunnelDomain?: string | undefined;
  readonly tunnelScheme?: TunnelScheme | undefined;
  readonly tunnelPublicPort?: number | undefined;
}

/** The checked tunnel domain of `settings`, or undefined for none; an InvalidArgument ConnectError says what is wrong. */
export function tunnelDomainOf(settings: TunnelDomainSettings): TunnelDomain | undefined {
  if (settings.tunnelDomain === undefined) {
    if (settings.tunnelScheme !== undefined || settings.tunnelPublicPort !== undefined) {
      throw invalid("tunnelScheme and tunnelPublicPort need a tunnelDomain");
    }
    return undefined;
  }
  return new TunnelDomain({
    domain: settings.tunnelDomain,
    scheme: settings.tunnelScheme,
    publicPort: settings.tunnelPublicPort,
  });
}
