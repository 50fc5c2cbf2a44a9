/**
 * How the server's gateway (tunnels, connect tokens, service URLs) reaches a port inside a
 * sandbox: a TCP connection from the server to the sandbox's own address over its link (the
 * local runtime's `dial`). Nothing listening there is a "refused" dial (the gateway answers
 * 502 naming the port); a server running another runtime has no way in ("unsupported").
 */
import type { Duplex } from "node:stream";
import { IngressDialError, type IngressDialer } from "@sbx/server-kit/ingress";
import type { LocalSandboxRuntime } from "../runtime/local/index.js";

export function sandboxPortDialer(runtime: LocalSandboxRuntime | undefined): IngressDialer {
  return {
    async dial(sandboxId: string, port: number, signal?: AbortSignal): Promise<Duplex> {
      if (!runtime) {
        throw new IngressDialError(
          `port ${port} of sandbox ${sandboxId} cannot be reached: this server's runtime has no way into sandboxes`,
          "unsupported",
        );
      }
      try {
        return await runtime.dial(sandboxId, port, signal);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        const why =
          code === "ECONNREFUSED"
            ? "nothing listens there"
            : signal?.aborted
              ? "the dial was abandoned"
              : (error as Error).message;
        throw new IngressDialError(`port ${port} of sandbox ${sandboxId} cannot be reached: ${why}`, "refused");
      }
    },
  };
}
