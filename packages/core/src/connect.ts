/**
 * @sbx/core/connect — sbx's RPC clients over a Connect transport (`@connectrpc/connect` and
 * protobuf-es). The Node, Deno and Bun adapters use it; @sbx/web speaks the Connect protocol
 * itself and leaves it out of browser bundles.
 */
import { createClient, type Transport } from "@connectrpc/connect";
import { FilesystemService, ImageService, NetworkService, ProcessService, SandboxService } from "@sbx/proto";
import { CONNECT_CLIENTS } from "./connect-clients.js";
import type { RpcClients } from "./rpc.js";
import { attachTo } from "./transport-attachment.js";

export {
  attachedPortDialer,
  type PortConnection,
  type PortDialer,
  portConnectError,
  withPortDialer,
} from "./port-dialer.js";

/** Connect's clients for the sbx.v1 services over `transport`. */
export function connectClients(transport: Transport): RpcClients {
  return {
    sandboxes: createClient(SandboxService, transport),
    processes: createClient(ProcessService, transport),
    files: createClient(FilesystemService, transport),
    images: createClient(ImageService, transport),
    network: createClient(NetworkService, transport),
  };
}

/**
 * `transport`, carrying the means to build sbx clients over it, so any runtime package accepts
 * it as `{ transport }` — @sbx/web included, which has no Connect client of its own
 * (`fake.transport` from @sbx/testing comes this way).
 */
export function withConnectClients<T extends Transport>(transport: T): T {
  return attachTo(transport, CONNECT_CLIENTS, () => connectClients(transport));
}
