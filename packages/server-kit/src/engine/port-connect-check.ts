/**
 * What a port connection (`sb.connect`, `sb.tunnel`: a stream of the tunnel route of
 * `@sbx/proto`'s port-mux.ts) needs before anything is dialed, shared by every way a target
 * serves it (`ingress/tunnel-session.ts`, the in-process fake's dialer): a well-formed
 * port, a sandbox that exists and runs. Any port may be connected to, not only the sandbox's
 * exposed `ports`: those are what `tunnels()` publishes without a token, while a connection
 * is made with the sbx token itself, whose holder controls the sandbox anyway. Browser-safe.
 */
import { type MuxCode, portProblem } from "@sbx/proto";
import type { Engine } from "./engine.js";

export interface PortConnectProblem {
  readonly refusal: MuxCode;
  readonly message: string;
}

/** Why `port` of `sandboxId` cannot be connected to now, or undefined when it may be dialed. */
export function portConnectProblem(engine: Engine, sandboxId: string, port: number): PortConnectProblem | undefined {
  const badPort = portProblem(port, "port");
  if (badPort) return { refusal: "invalid", message: badPort };
  const sandbox = engine.sandboxes.get(sandboxId);
  if (!sandbox) return { refusal: "notFound", message: `sandbox ${sandboxId} not found` };
  if (!sandbox.running) return { refusal: "notRunning", message: `sandbox ${sandboxId} has finished` };
  return undefined;
}
