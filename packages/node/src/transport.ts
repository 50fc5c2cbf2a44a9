import type { Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";

export interface NodeTransportOptions {
  /** "connect" (default): the Connect protocol. "grpc": gRPC (always HTTP/2). */
  readonly protocol?: "connect" | "grpc";
  /** HTTP version for the Connect protocol: "2" (default, one multiplexed connection) or "1.1". */
  readonly httpVersion?: "1.1" | "2";
}

/** A Connect transport for Node.js talking to an sbx server at `endpoint`. */
export function createNodeTransport(endpoint: string, options: NodeTransportOptions = {}): Transport {
  if (options.protocol === "grpc") return createGrpcTransport({ baseUrl: endpoint });
  return createConnectTransport({ baseUrl: endpoint, httpVersion: options.httpVersion ?? "2" });
}
