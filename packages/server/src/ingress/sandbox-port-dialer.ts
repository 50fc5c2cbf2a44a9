/**
 * How the server's gateway (tunnels, connect tokens, service URLs) reaches a port inside a
 * sandbox — THE place the per-sandbox network plugs in. Sandboxes have no routed address yet
 * (issue #18's network step), so every dial is refused as unsupported and the gateway answers
 * 502 saying so. Once the runtime gives each sandbox an address, this connects to
 * `<address>:<port>` (node:net) and answers a refused connection with reason "refused".
 */
import type { Duplex } from "node:stream";
import { IngressDialError, type IngressDialer } from "@sbx/server-kit/ingress";

export function sandboxPortDialer(): IngressDialer {
  return {
    async dial(sandboxId: string, port: number): Promise<Duplex> {
      throw new IngressDialError(
        `port ${port} of sandbox ${sandboxId} cannot be reached: this server's sandboxes have no network address yet`,
        "unsupported",
      );
    },
  };
}
