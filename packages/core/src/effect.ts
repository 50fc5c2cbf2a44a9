/**
 * @sbx/core/effect — the Effect-native API: the `SbxRpc` service and its Layer, every
 * operation as an `Effect` or `Stream` requiring `SbxRpc`, and the errors (each a tagged
 * error: `Effect.catchTag("NotFoundError", …)`).
 *
 * ```ts
 * const program = Effect.gen(function* () {
 *   const sb = yield* Sandboxes.create({ command: ["sh", "-c", "echo hi"] });
 *   const text = yield* Stream.mkString(Processes.outputText({ sandboxId: sb.id, processId: sb.entrypointProcessId, stream: "stdout" }));
 * });
 * Effect.runPromise(program.pipe(Effect.provide(SbxRpc.layer(transport, { token }))));
 * ```
 */
import type { Transport } from "@connectrpc/connect";
import type * as Layer from "effect/Layer";
import { resolveConfig, type SandboxClientOptions } from "./config.js";
import { connectClients } from "./connect.js";
import { type RpcClients, rpcLayer, type SbxRpc } from "./rpc.js";

export { type ResolvedConfig, resolveConfig } from "./config.js";
export * from "./errors.js";
export { longPoll } from "./long-poll.js";
export * as Processes from "./processes-effect.js";
export { returncodeOf } from "./returncode.js";
export {
  call,
  type RpcClients,
  retryDelayMs,
  retrying,
  retryingStream,
  SbxRpc,
  type SbxRpcShape,
  withDeadline,
} from "./rpc.js";
export { isTransient, toSandboxError } from "./rpc-errors.js";
export * as Sandboxes from "./sandboxes-effect.js";

/** A Layer providing `SbxRpc` over a Connect transport. */
export const layer = (
  transport: Transport,
  options: Omit<SandboxClientOptions, "transport"> = {},
): Layer.Layer<SbxRpc> => rpcLayer(connectClients(transport), resolveConfig(options));

/** A Layer providing `SbxRpc` over an adapter's own RPC clients (as @sbx/web's). */
export const clientsLayer = (
  clients: RpcClients,
  options: Omit<SandboxClientOptions, "transport"> = {},
): Layer.Layer<SbxRpc> => rpcLayer(clients, resolveConfig(options));
