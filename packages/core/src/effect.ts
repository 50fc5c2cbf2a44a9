/**
 * @sbx/core/effect — the Effect-native API: the `SbxConnection` service and its Layer, every
 * operation as an `Effect` or `Stream` requiring `SbxConnection` (`Sandboxes`, `Processes`,
 * `Commands`, `Files`, `Images`), and the errors (each a tagged error: `Effect.catchTag("NotFoundError", …)`).
 *
 * ```ts
 * const program = Effect.gen(function* () {
 *   const sb = yield* Sandboxes.create({});
 *   const result = yield* Commands.run(sb.id, "echo hi");   // { stdout, stderr, exitCode, success }
 *   yield* Files.writeText(sb.id, "/tmp/a.txt", result.stdout);
 *   yield* Sandboxes.terminate(sb.id);
 * });
 * Effect.runPromise(program.pipe(Effect.provide(layer(transport, { token }))));
 * ```
 */
import type { Transport } from "@connectrpc/connect";
import type * as Layer from "effect/Layer";
import { resolveConfig, type SandboxClientOptions } from "./config.js";
import { connectClients } from "./connect.js";
import { attachedPortDialer } from "./port-dialer.js";
import { attachedTunnelChannel } from "./port-session.js";
import { connectionLayer, type SbxConnection } from "./rpc.js";

export * as Commands from "./commands-effect.js";
export type { ResolvedConfig } from "./config.js";
export * from "./errors.js";
export * as Files from "./files-effect.js";
export * as Images from "./images-effect.js";
export { longPoll } from "./long-poll.js";
export * as Network from "./network-effect.js";
export * as Processes from "./processes-effect.js";
export { returncodeOf } from "./returncode.js";
export {
  call,
  type RpcClients,
  retryDelayMs,
  retrying,
  retryingStream,
  SbxConnection,
  type SbxConnectionShape,
  withDeadline,
} from "./rpc.js";
export { isTransient } from "./rpc-errors.js";
export * as Sandboxes from "./sandboxes-effect.js";

/** A Layer providing `SbxConnection` over a Connect transport. */
export const layer = (
  transport: Transport,
  options: Omit<SandboxClientOptions, "transport"> = {},
): Layer.Layer<SbxConnection> =>
  connectionLayer(connectClients(transport), resolveConfig(options), {
    dialer: attachedPortDialer(transport),
    channel: attachedTunnelChannel(transport),
  });
