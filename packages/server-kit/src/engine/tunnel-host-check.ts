/**
 * Whether a tunnel domain's host name (`ingress/tunnel-domain.ts`) leads anywhere now, for
 * every target alike (the front door in `ingress/host-router.ts` asks: for an open tunnel's name
 * at once, for a gateway's only once a token verified): the sandbox exists and runs, and the
 * open tunnel's port is one of its exposed `ports` (the token gateway's may be any port: its
 * tokens say which). Every other case is one answer (404) whatever the reason, so a host name
 * tells nothing about sandboxes its caller does not already know of. Browser-safe.
 */
import type { Engine } from "./engine.js";

export function tunnelHostOpen(engine: Engine, kind: "tunnel" | "gateway", sandboxId: string, port: number): boolean {
  const sandbox = engine.sandboxes.get(sandboxId);
  if (!sandbox?.running) return false;
  return kind === "gateway" || sandbox.spec.ports.includes(port);
}
