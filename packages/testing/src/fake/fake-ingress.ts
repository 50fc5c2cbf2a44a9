/**
 * The fake's ingress (the engine's `SandboxIngress`) as the engine holds it from the start:
 * until `listen()` there is nowhere to serve a port, so tunnels and tokens say to listen
 * first; `listen()` (Node) attaches server-kit's `ListenerIngress` — the very listeners, token
 * gateway and JWT tokens the sbx server uses — dialing the port registry
 * (fake-port-dialer.ts). Browser-safe: nothing here imports Node.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { IngressToken, IngressTokenRequest, IngressTunnel, SandboxIngress } from "@sbx/server-kit";

export class FakeIngress implements SandboxIngress {
  /** Set by `listen()` (the first one); until then tunnels and tokens are refused. */
  #attached: SandboxIngress | undefined;

  get attached(): boolean {
    return this.#attached !== undefined;
  }

  attach(ingress: SandboxIngress): void {
    this.#attached = ingress;
  }

  async tunnels(sandboxId: string, ports: readonly number[]): Promise<IngressTunnel[]> {
    return this.#ingress().tunnels(sandboxId, ports);
  }

  async createToken(request: IngressTokenRequest): Promise<IngressToken> {
    return this.#ingress().createToken(request);
  }

  sandboxEnded(sandboxId: string): void {
    this.#attached?.sandboxEnded(sandboxId);
  }

  #ingress(): SandboxIngress {
    if (this.#attached) return this.#attached;
    throw new ConnectError(
      "the fake serves tunnels and tokens on real ports: call fake.listen() first (Node)",
      Code.FailedPrecondition,
    );
  }
}
