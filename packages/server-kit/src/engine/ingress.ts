/**
 * The ingress seam: how clients outside reach a sandbox's ports — tunnels to its exposed
 * ports and the token gateway (connect tokens, service URLs). The engine checks the calls
 * (the sandbox, its ports, the token's lifetime) and waits for readiness; the seam makes the
 * listeners (or, under a tunnel domain, the host names) and the tokens. Both targets plug in
 * server-kit's `ListenerIngress`, the fake's dialing its port registry.
 */

export interface IngressTunnel {
  /** The port inside the sandbox. */
  readonly containerPort: number;
  readonly host: string;
  readonly port: number;
  /** "http://host:port", or under a tunnel domain "https://<port>-<sandbox id>.<domain>". */
  readonly url: string;
}

export interface IngressToken {
  /** Where the token is accepted (Authorization: Bearer, ?sbx_token= or its cookie). */
  readonly url: string;
  readonly token: string;
  /** Milliseconds since the epoch; 0: valid while the sandbox runs. */
  readonly expiresAtMs: number;
}

export interface IngressTokenRequest {
  readonly sandboxId: string;
  readonly port: number;
  /** "connect" (Modal's connect tokens, with user metadata) or "service" (service URLs). */
  readonly audience: "connect" | "service";
  /** JSON given to the app as X-Verified-User-Data; undefined: none. */
  readonly userMetadata?: string | undefined;
  /** 0: while the sandbox runs. */
  readonly expiresInMs: number;
}

export interface SandboxIngress {
  /** The tunnels to `ports` of a running sandbox, one per port, in the order given. */
  tunnels(sandboxId: string, ports: readonly number[]): Promise<IngressTunnel[]>;
  /** A token for `port` of a running sandbox, and the URL that takes it. */
  createToken(request: IngressTokenRequest): Promise<IngressToken>;
  /** The sandbox has ended: its tunnels close and its tokens stop working. */
  sandboxEnded(sandboxId: string): void;
}
