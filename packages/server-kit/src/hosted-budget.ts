/**
 * The front door's budget for hosted requests (those a host router takes: a tunnel domain's
 * sandbox names), apart from the API's. A hosted request let through is in flight until
 * answered, as an API request is, and holds a connection to its target besides; anyone may send
 * one to an open tunnel. So they have caps of their own: on all of them at once, below the cap on
 * connections (the API always has room: ConnectionGuard drops waiting connections for a new
 * one, and no more than this many connections can be busy with hosted requests), per client
 * address and per target (a sandbox's port). Past a cap a request is refused (503) and counts as
 * refused. A hosted request's body has a deadline, so bodies sent a byte at a time (slowloris)
 * cannot hold places for long. Counts are of requests and WebSockets, not connections: HTTP/2
 * carries many on one.
 */

export interface HostedLimits {
  /**
   * Most hosted requests (WebSockets included) in flight at once. Default: half of
   * maxConnections; never more than maxConnections − 1.
   */
  readonly maxRequests?: number;
  /** Most from one client address (behind a proxy, the proxy is one). Default 250. */
  readonly maxRequestsPerAddress?: number;
  /** Most to one target (a sandbox's port, by any of its names). Default 1000. */
  readonly maxRequestsPerTarget?: number;
  /**
   * Longest a hosted request may take for its whole body to arrive (and be passed on), from the
   * moment it is let through; past it, a 408 (or, once the app has answered, the end of the
   * request) and its connection closed (HTTP/2: its stream). Default 60 s.
   */
  readonly requestTimeoutMs?: number;
}

export const DEFAULT_MAX_HOSTED_REQUESTS_PER_ADDRESS = 250;
export const DEFAULT_MAX_HOSTED_REQUESTS_PER_TARGET = 1000;
export const DEFAULT_HOSTED_REQUEST_TIMEOUT_MS = 60_000;

export class HostedBudget {
  readonly maxRequests: number;
  readonly maxPerAddress: number;
  readonly maxPerTarget: number;
  readonly requestTimeoutMs: number;
  #total = 0;
  readonly #byAddress = new Map<string, number>();
  readonly #byTarget = new Map<string, number>();

  constructor(limits: HostedLimits, maxConnections: number) {
    const ceiling = Math.max(0, maxConnections - 1);
    this.maxRequests = Math.min(ceiling, whole(limits.maxRequests) ?? Math.floor(maxConnections / 2));
    this.maxPerAddress = Math.min(
      this.maxRequests,
      whole(limits.maxRequestsPerAddress) ?? DEFAULT_MAX_HOSTED_REQUESTS_PER_ADDRESS,
    );
    this.maxPerTarget = Math.min(
      this.maxRequests,
      whole(limits.maxRequestsPerTarget) ?? DEFAULT_MAX_HOSTED_REQUESTS_PER_TARGET,
    );
    this.requestTimeoutMs = Math.max(1, limits.requestTimeoutMs ?? DEFAULT_HOSTED_REQUEST_TIMEOUT_MS);
  }

  /** In flight now (all of them). */
  get inFlight(): number {
    return this.#total;
  }

  /**
   * A place for a request from `address` to `target`, or undefined when a cap is reached. The
   * returned function gives it back (once, however often it is called).
   */
  take(address: string, target: string): (() => void) | undefined {
    if (
      this.#total >= this.maxRequests ||
      (this.#byAddress.get(address) ?? 0) >= this.maxPerAddress ||
      (this.#byTarget.get(target) ?? 0) >= this.maxPerTarget
    ) {
      return undefined;
    }
    this.#total++;
    add(this.#byAddress, address, 1);
    add(this.#byTarget, target, 1);
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.#total--;
      add(this.#byAddress, address, -1);
      add(this.#byTarget, target, -1);
    };
  }
}

function add(counts: Map<string, number>, key: string, by: number): void {
  const count = (counts.get(key) ?? 0) + by;
  if (count > 0) counts.set(key, count);
  else counts.delete(key);
}

/** A cap as given: a whole number ≥ 0, or undefined for the default. */
function whole(value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`hosted request limits must be whole numbers ≥ 0, got ${value}`);
  }
  return value;
}
