/**
 * @sbx/core/adapter — what runtime packages (@sbx/node, @sbx/web, @sbx/deno, @sbx/bun) build a
 * client from, and nothing a user of the client needs: the hooks of `SandboxClient`'s second
 * constructor argument (`ClientDefaults`), raw HTTP for bulk bytes, local files, RPC failures
 * for an adapter's own Connect client, the tunnel route's plain HTTP/1.1 upgrade and a channel
 * over a node:net-like socket, and a few byte helpers. Like
 * `@connectrpc/connect/protocol`: public for adapter authors, not part of the user API, which
 * is `@sbx/core` (Promise) and `@sbx/core/effect` (Effect).
 */
import type * as Layer from "effect/Layer";
import { resolveConfig, type SandboxClientOptions } from "./config.js";
import { connectionLayer, type RpcClients, type SbxConnection } from "./rpc.js";

export { MUX_PROTOCOL as TUNNEL_PROTOCOL } from "@sbx/proto";
export { concat, skipBytes } from "./bytes.js";
export type { ClientDefaults } from "./client.js";
export { fetchRawHttp } from "./fetch-raw-http.js";
export { type FilesystemFactory, type LocalFiles, localFilesystems } from "./filesystem.js";
export type { LocalImageFiles } from "./image-archive.js";
export { type ImagesFactory, localImages } from "./images.js";
export type { ListenLocal, LocalConnection, LocalListener } from "./local-tunnel.js";
export {
  type OpenTunnelChannel,
  type TunnelChannel,
  type TunnelChannelEvents,
  type TunnelChannelRequest,
  withTunnelChannel,
} from "./port-session.js";
export {
  endpointBase,
  parseJson,
  RAW_HEADER,
  type RawAnswer,
  type RawBody,
  type RawHttpClient,
  type RawRequest,
  type RawRoute,
  RawRouteMemo,
  rawFilePath,
  rawOutputPath,
} from "./raw-routes.js";
export type { RpcClients } from "./rpc.js";
export { Code as RpcCode, RpcFailure, type RpcFailureDetail, rpcFailureFromJson } from "./rpc-failure.js";
export { type StreamSocket, streamSocketChannel } from "./stream-socket-channel.js";
export { type StreamSocketEnds, streamSocketStreams } from "./stream-socket-streams.js";
export {
  type TunnelUpgrade,
  TunnelUpgradeAnswer,
  tunnelConnectFailed,
  tunnelUpgrade,
  tunnelUpgradeRefused,
} from "./tunnel-upgrade.js";

/** A Layer providing `SbxConnection` over an adapter's own RPC clients (as @sbx/web's). */
export const clientsLayer = (
  clients: RpcClients,
  options: Omit<SandboxClientOptions, "transport"> = {},
): Layer.Layer<SbxConnection> => connectionLayer(clients, resolveConfig(options));
