import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { http2Unary } from "./http2-unary.js";

export interface NodeTransportOptions {
  /** "connect" (default): the Connect protocol. "grpc": gRPC (always HTTP/2). */
  readonly protocol?: "connect" | "grpc";
  /** HTTP version for the Connect protocol: "2" (default, one multiplexed connection) or "1.1". */
  readonly httpVersion?: "1.1" | "2";
  /**
   * Move bulk bytes (process output, file contents) as plain HTTP bodies beside Connect
   * (default true), several times faster than protobuf messages. False: everything through
   * `protocol`.
   */
  readonly rawHttp?: boolean;
}

/** A Connect transport for Node.js talking to an sbx server at `endpoint`. */
export function createNodeTransport(endpoint: string, options: NodeTransportOptions = {}): Transport {
  // No gzip/brotli: output is streamed at pipe speed, and compressing it costs more CPU
  // than it saves on the links sbx runs over (loopback, LAN).
  const common = { baseUrl: endpoint, acceptCompression: [] };
  if (options.protocol === "grpc") return createGrpcTransport(common);
  if (options.httpVersion === "1.1") return createConnectTransport({ ...common, httpVersion: "1.1" });
  // HTTP/2: unary calls go straight over the session (http2-unary.ts), streams through Connect's
  // transport on the same session manager (its defaults: no pings, idle after 15 minutes).
  const sessionManager = new Http2SessionManager(endpoint);
  const streaming = createConnectTransport({ ...common, httpVersion: "2", sessionManager });
  return { unary: http2Unary(sessionManager, endpoint), stream: (...args) => streaming.stream(...args) };
}
