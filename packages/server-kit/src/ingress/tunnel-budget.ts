/**
 * What the tunnel route (tunnel-route.ts, tunnel-session.ts) lets its clients hold, per
 * connection and across every connection of the route: streams (each one descriptor to a
 * port, while dialing too), dials in flight, the client bytes windows let in (buffered
 * toward ports or still on the way), and the bytes queued toward a client that does not read.
 * One `TunnelBudget` per route, shared by all its sessions.
 */
import { MUX_MAX_STREAMS } from "@sbx/proto";

export interface TunnelLimits {
  /** Streams on one connection at once, dialing or open (at most MUX_MAX_STREAMS). */
  readonly streamsPerConnection: number;
  /** Streams at once over every connection (each holds a descriptor): past it, OPEN gets RESET "limit". */
  readonly streams: number;
  /** Dials in flight at once over every connection: past it, OPEN gets RESET "limit". */
  readonly dials: number;
  /** How long a dial may take before its stream is reset. */
  readonly dialTimeoutMs: number;
  /** Client bytes one connection's windows let in at once (granted, not yet taken by the ports). */
  readonly windowBytesPerConnection: number;
  /** The same over every connection. */
  readonly windowBytes: number;
  /** A stream's window never shrinks below this, so every stream goes on however many share the budget. */
  readonly minStreamWindow: number;
  /** Bytes queued toward a client past which its connection is no longer read (until they go). */
  readonly queueHighWater: number;
  /** Bytes queued toward a client past which its connection ends (GOAWAY "limit"). */
  readonly maxQueuedBytes: number;
}

export const DEFAULT_TUNNEL_LIMITS: TunnelLimits = {
  streamsPerConnection: MUX_MAX_STREAMS,
  streams: 4096,
  dials: 256,
  dialTimeoutMs: 10_000,
  windowBytesPerConnection: 16 * 1024 * 1024,
  windowBytes: 256 * 1024 * 1024,
  minStreamWindow: 64 * 1024,
  queueHighWater: 1024 * 1024,
  maxQueuedBytes: 4 * 1024 * 1024,
};

/** The route-wide counts, and its limits. */
export class TunnelBudget {
  readonly limits: TunnelLimits;
  /** Streams held (dialing or open) over every connection. */
  streams = 0;
  /** Dials in flight over every connection. */
  dials = 0;
  /** Window bytes granted to clients and not yet taken by ports, over every connection. */
  windowBytes = 0;

  constructor(limits: Partial<TunnelLimits> = {}) {
    const merged = { ...DEFAULT_TUNNEL_LIMITS, ...limits };
    this.limits = { ...merged, streamsPerConnection: Math.min(merged.streamsPerConnection, MUX_MAX_STREAMS) };
  }
}
