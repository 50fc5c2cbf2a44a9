/**
 * Ingress operations as Effects over `SbxConnection`: tunnels to exposed ports, connect
 * tokens, service tokens. What works where today: the fake (`@sbx/testing`, listening on a
 * port) serves all three from its port registry; the sbx server answers `UnsupportedError`
 * until its tunnels land (issue #18).
 */
import { portProblem } from "@sbx/proto";
import * as Effect from "effect/Effect";
import { ConnectionError, InvalidError, SandboxError } from "./errors.js";
import { longPoll, longPollSettings } from "./long-poll.js";
import type { PortConnection } from "./port-dialer.js";
import type { PortSession } from "./port-session.js";
import { call, SbxConnection } from "./rpc.js";
import { validated } from "./validation.js";

/**
 * Where an exposed port is reached: `url` is `http://host:port`, or under the server's tunnel
 * domain `https://<port>-<sandbox id>.<domain>` (`host` that name, `port` the one clients use).
 */
export interface Tunnel {
  readonly host: string;
  readonly port: number;
  readonly url: string;
}

export interface ConnectTokenOptions {
  /**
   * Given to the sandbox's app with every request made with the token, as JSON in the
   * `X-Verified-User-Data` header (a caller's own header of that name is dropped). A string
   * must be JSON already; an object is serialized. At most 4 KiB.
   */
  readonly userMetadata?: string | Record<string, unknown>;
  /** The port inside the sandbox the token opens, default 8080. */
  readonly port?: number;
}

/** A token and the URL that takes it (`Authorization: Bearer`, `?sbx_token=`, or the cookie that sets). */
export interface ConnectCredentials {
  readonly url: string;
  readonly token: string;
}

export interface ServiceToken extends ConnectCredentials {
  /** Milliseconds since the epoch. */
  readonly expiresAtMs: number;
}

/** The most bytes of user metadata a token carries. */
export const MAX_USER_METADATA_BYTES = 4096;

const check = (problem: string | undefined) => {
  if (problem) throw new InvalidError(problem);
};

/** A port number, checked (`InvalidError` before any request). */
export function validatePort(port: unknown, what = "port"): number {
  check(portProblem(port as number, what));
  return port as number;
}

/**
 * The tunnels of the sandbox's exposed `ports`, by port inside the sandbox, once its readiness
 * probe (if any) has passed; `TimeoutError` past `timeoutMs`.
 */
export const getTunnels = (
  sandboxId: string,
  timeoutMs?: number,
): Effect.Effect<Record<number, Tunnel>, SandboxError, SbxConnection> =>
  longPoll(
    `waiting for the tunnels of sandbox ${sandboxId}`,
    (holdMs) =>
      call(
        `get the tunnels of sandbox ${sandboxId}`,
        (rpc, o) => rpc.network.getTunnels({ sandboxId, timeoutMs: holdMs }, o),
        longPollSettings(holdMs),
      ).pipe(Effect.map((r) => ({ done: r.ready, tunnels: r.tunnels }))),
    timeoutMs,
  ).pipe(
    Effect.map(({ tunnels }) => {
      const out: Record<number, Tunnel> = {};
      for (const t of tunnels) out[t.containerPort] = { host: t.host, port: t.port, url: t.url };
      return out;
    }),
  );

/**
 * A TCP connection to `port` inside the sandbox, as web byte streams (`{ readable, writable }`):
 * a session of its own to the endpoint's tunnel route (one connection to the server, closed
 * once this connection is over), or the in-process fake's own dialer. `TunnelError` (with
 * `port`) when nothing listens there.
 */
export const connectPort = (
  sandboxId: string,
  port: number,
): Effect.Effect<PortConnection, SandboxError, SbxConnection> =>
  Effect.gen(function* () {
    yield* validated(() => validatePort(port));
    const rpc = yield* SbxConnection;
    return yield* Effect.tryPromise({
      try: async (signal) => {
        const session = await rpc.openPortSession(sandboxId, signal);
        try {
          return await session.open(port, { signal });
        } finally {
          session.shutdown();
        }
      },
      catch: (error) =>
        error instanceof SandboxError
          ? error
          : new ConnectionError(`connect to port ${port} of sandbox ${sandboxId}: ${String(error)}`, { cause: error }),
    });
  });

/** A session to the ports of `sandboxId` (one connection to the server; `sb.tunnel` keeps one). */
export const openPortSession = (sandboxId: string): Effect.Effect<PortSession, SandboxError, SbxConnection> =>
  Effect.gen(function* () {
    const rpc = yield* SbxConnection;
    return yield* Effect.tryPromise({
      try: (signal) => rpc.openPortSession(sandboxId, signal),
      catch: (error) =>
        error instanceof SandboxError
          ? error
          : new ConnectionError(`open a tunnel to sandbox ${sandboxId}: ${String(error)}`, { cause: error }),
    });
  });

function userMetadataOf(metadata: ConnectTokenOptions["userMetadata"]): string {
  if (metadata === undefined) return "";
  let text: string;
  if (typeof metadata === "string") {
    try {
      JSON.parse(metadata);
    } catch {
      throw new InvalidError("userMetadata must be JSON when given as a string");
    }
    text = metadata;
  } else if (typeof metadata === "object" && metadata !== null) {
    try {
      text = JSON.stringify(metadata);
    } catch (error) {
      throw new InvalidError(`userMetadata cannot be serialized: ${(error as Error).message}`);
    }
  } else {
    throw new InvalidError("userMetadata must be a JSON string or an object");
  }
  const bytes = new TextEncoder().encode(text).byteLength;
  if (bytes > MAX_USER_METADATA_BYTES) {
    throw new InvalidError(`userMetadata is ${bytes} bytes as JSON, more than the limit of ${MAX_USER_METADATA_BYTES}`);
  }
  return text;
}

export const createConnectToken = (
  sandboxId: string,
  options: ConnectTokenOptions = {},
): Effect.Effect<ConnectCredentials, SandboxError, SbxConnection> =>
  Effect.gen(function* () {
    const request = yield* validated(() => ({
      sandboxId,
      port: validatePort(options.port ?? 8080),
      userMetadata: userMetadataOf(options.userMetadata),
    }));
    const r = yield* call(`create a connect token for sandbox ${sandboxId}`, (rpc, o) =>
      rpc.network.createConnectToken(request, o),
    );
    return { url: r.url, token: r.token };
  });

/** A service token's lifetime: 10 minutes unless given, 1 s to 24 h. */
export const MIN_SERVICE_TOKEN_MS = 1_000;
export const MAX_SERVICE_TOKEN_MS = 86_400_000;

export const createServiceToken = (
  sandboxId: string,
  port: number,
  expiresInMs?: number,
): Effect.Effect<ServiceToken, SandboxError, SbxConnection> =>
  Effect.gen(function* () {
    const request = yield* validated(() => {
      if (
        expiresInMs !== undefined &&
        !(Number.isInteger(expiresInMs) && expiresInMs >= MIN_SERVICE_TOKEN_MS && expiresInMs <= MAX_SERVICE_TOKEN_MS)
      ) {
        throw new InvalidError(
          `expiresInMs must be a whole number from ${MIN_SERVICE_TOKEN_MS} to ${MAX_SERVICE_TOKEN_MS}, got ${expiresInMs}`,
        );
      }
      return { sandboxId, port: validatePort(port), expiresInMs: BigInt(expiresInMs ?? 0) };
    });
    const r = yield* call(`create a service token for sandbox ${sandboxId}`, (rpc, o) =>
      rpc.network.createServiceToken(request, o),
    );
    return { url: r.url, token: r.token, expiresAtMs: Number(r.expiresAtMs) };
  });
