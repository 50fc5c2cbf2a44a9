/** Finding RPC clients for a user's Connect transport without importing Connect itself. */
import type { Transport } from "@connectrpc/connect";
import type { RpcClients } from "./rpc.js";
import { attachedFunction } from "./transport-attachment.js";

/** Where `withConnectClients` (@sbx/core/connect) leaves a transport's client factory. */
export const CONNECT_CLIENTS = Symbol.for("@sbx/core/connectClients");

/** The clients `withConnectClients` attached to `transport`, if it did. */
export function attachedConnectClients(transport: Transport): RpcClients | undefined {
  return attachedFunction<() => RpcClients>(transport, CONNECT_CLIENTS)?.();
}
