/**
 * NetworkService: tunnels to exposed ports (once the readiness probe passes), connect tokens
 * and service tokens, through the engine's ingress seam; UNIMPLEMENTED where it has none.
 * OpenTunnel (TCP over the client's own connection) is not built on either target yet.
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { MAX_LONG_POLL_MS, type NetworkService, portProblem } from "@sbx/proto";
import { MAX_USER_METADATA_BYTES } from "../../ingress/limits.js";
import { invalid } from "../../validation.js";
import type { Engine } from "../engine.js";
import type { EngineSandbox } from "../engine-sandbox.js";
import type { SandboxIngress } from "../ingress.js";
import { sandboxOf } from "./lookup.js";

export { MAX_USER_METADATA_BYTES };
/** A service token's lifetime: 10 minutes unless asked, 1 s to 24 h. */
export const DEFAULT_SERVICE_TOKEN_MS = 600_000;
export const MIN_SERVICE_TOKEN_MS = 1_000;
export const MAX_SERVICE_TOKEN_MS = 86_400_000;

export function networkService(engine: Engine): ServiceImpl<typeof NetworkService> {
  const ingressOf = (what: string): SandboxIngress => {
    if (engine.ingress) return engine.ingress;
    throw new ConnectError(`${what} are not supported by the ${engine.runtime.name} runtime yet`, Code.Unimplemented);
  };
  const runningSandbox = (sandboxId: string): EngineSandbox => {
    const sandbox = sandboxOf(engine, sandboxId);
    if (!sandbox.running) throw new ConnectError(`sandbox ${sandboxId} has finished`, Code.FailedPrecondition);
    return sandbox;
  };
  const checkPort = (port: number) => {
    const problem = portProblem(port, "port");
    if (problem) throw invalid(problem);
  };

  return {
    async getTunnels(request, context) {
      const ingress = ingressOf("tunnels");
      const sandbox = runningSandbox(request.sandboxId);
      // As Modal's: a sandbox created without ports has no tunnels (an empty map, not an error).
      if (sandbox.spec.ports.length === 0) return { tunnels: [], ready: true };
      const { readiness } = sandbox;
      if (!readiness.ready) {
        await readiness.changed.wait(Math.min(request.timeoutMs || MAX_LONG_POLL_MS, MAX_LONG_POLL_MS), context.signal);
        if (!sandbox.running)
          throw new ConnectError(`sandbox ${request.sandboxId} has finished`, Code.FailedPrecondition);
        if (!readiness.ready) return { tunnels: [], ready: false };
      }
      const ports = [...sandbox.spec.ports].sort((a, b) => a - b);
      return { tunnels: await ingress.tunnels(sandbox.info.id, ports), ready: true };
    },

    async createConnectToken(request) {
      const ingress = ingressOf("connect tokens");
      checkPort(request.port);
      if (new TextEncoder().encode(request.userMetadata).byteLength > MAX_USER_METADATA_BYTES) {
        throw invalid(`user_metadata is longer than ${MAX_USER_METADATA_BYTES} bytes`);
      }
      if (request.userMetadata) {
        try {
          JSON.parse(request.userMetadata);
        } catch {
          throw invalid("user_metadata must be JSON");
        }
      }
      const expiresInMs = Number(request.expiresInMs);
      if (expiresInMs > MAX_SERVICE_TOKEN_MS) throw invalid(`expires_in_ms is at most ${MAX_SERVICE_TOKEN_MS}`);
      const sandbox = runningSandbox(request.sandboxId);
      const token = await ingress.createToken({
        sandboxId: sandbox.info.id,
        port: request.port,
        audience: "connect",
        userMetadata: request.userMetadata || undefined,
        expiresInMs,
      });
      return { url: token.url, token: token.token, expiresAtMs: BigInt(token.expiresAtMs) };
    },

    async createServiceToken(request) {
      const ingress = ingressOf("service URLs");
      checkPort(request.port);
      const expiresInMs = Number(request.expiresInMs) || DEFAULT_SERVICE_TOKEN_MS;
      if (expiresInMs < MIN_SERVICE_TOKEN_MS || expiresInMs > MAX_SERVICE_TOKEN_MS) {
        throw invalid(`expires_in_ms must be between ${MIN_SERVICE_TOKEN_MS} and ${MAX_SERVICE_TOKEN_MS}`);
      }
      const sandbox = runningSandbox(request.sandboxId);
      const token = await ingress.createToken({
        sandboxId: sandbox.info.id,
        port: request.port,
        audience: "service",
        expiresInMs,
      });
      return { url: token.url, token: token.token, expiresAtMs: BigInt(token.expiresAtMs) };
    },

    // biome-ignore lint/correctness/useYield: refused before any message, on every target for now
    async *openTunnel() {
      throw new ConnectError("TCP tunnels over the client's connection are not supported yet", Code.Unimplemented);
    },
  };
}
