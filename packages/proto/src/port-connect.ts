/**
 * The port-connect route's contract (hand-written, beside the raw routes): a TCP connection to
 * a port inside a sandbox, carried over one WebSocket on the API's own port. The server serves
 * it, clients (`sb.connect`, `sb.tunnel`) open it, and both build it from here. Browser-safe.
 *
 *   GET /sbx.v1/sandboxes/{sandboxId}/ports/{port}/connect      (a WebSocket upgrade, HTTP/1.1)
 *
 * Auth: the sbx bearer token, as `Authorization: Bearer <token>`, or — browsers cannot set
 * headers on a WebSocket — as the subprotocol `sbx.bearer.<base64url(token)>` offered beside
 * `sbx.v1`. The server answers with the subprotocol `sbx.v1`.
 *
 * The server checks the sandbox (it exists and runs) and dials the port first; only then does
 * the connection become usable:
 *   - ready: one text frame `{"ok":true}`, then binary frames carry the bytes both ways;
 *   - refused: the upgrade completes and the socket closes at once with a close code from
 *     PORT_CONNECT_CLOSE and a reason saying why (browsers see codes and reasons, not statuses).
 * Text frames after that are control messages (JSON objects, one per frame):
 *   - `{"end":true}` either way: the sender has no more bytes to send (TCP's half-close); the
 *     server closes the socket (1000) once both sides have ended, or when the port's
 *     connection closes.
 *   - `{"ack":n}` either way: the sender has consumed `n` bytes in all of what it received
 *     (the client: handed them to the app; the server: written them to the port). Neither side
 *     sends more than PORT_CONNECT_WINDOW bytes past the other's last ack. This is the flow
 *     control: a WebSocket in a browser cannot pause its reading, and pausing a socket's
 *     reading would hold up the acks too. A client past its window is closed (4400).
 * Unknown control messages are ignored. Connections are not multiplexed: one WebSocket each,
 * and a dropped WebSocket ends its connection.
 */

export const PORT_CONNECT_PREFIX = "/sbx.v1/sandboxes/";
/** The subprotocol both sides speak. */
export const PORT_CONNECT_PROTOCOL = "sbx.v1";
/** A subprotocol carrying the bearer token: this prefix, then the token as base64url (no padding). */
export const PORT_CONNECT_BEARER_PREFIX = "sbx.bearer.";
/** The server's first text frame once the port answered. */
export const PORT_CONNECT_READY = '{"ok":true}';
/** The control message that half-closes a direction. */
export const PORT_CONNECT_END = '{"end":true}';
/** Bytes the server sends past the client's last ack, at most. */
export const PORT_CONNECT_WINDOW = 4 * 1024 * 1024;
/** The client acks once it has taken this many bytes since its last ack. */
export const PORT_CONNECT_ACK_EVERY = 1024 * 1024;
/** The largest frame either side accepts. */
export const PORT_CONNECT_MAX_FRAME = 1024 * 1024;

/** Why a connection was refused: the close code and the error the client raises. */
export const PORT_CONNECT_CLOSE = {
  /** A bad sandbox id or port (InvalidError). */
  invalid: 4400,
  /** Missing or wrong bearer token (AuthenticationError). */
  unauthenticated: 4401,
  /** No such sandbox (NotFoundError). */
  notFound: 4404,
  /** The sandbox has finished (FailedPreconditionError). */
  notRunning: 4409,
  /** The server failed (InternalError). */
  internal: 4500,
  /** The target cannot reach sandbox ports (UnsupportedError). */
  unsupported: 4501,
  /** Nothing listens on the port, or the port's connection failed (TunnelError). */
  refused: 4502,
} as const;

export type PortConnectRefusal = keyof typeof PORT_CONNECT_CLOSE;

/** The route's path for `port` of `sandboxId`. */
export const portConnectPath = (sandboxId: string, port: number): string =>
  `${PORT_CONNECT_PREFIX}${encodeURIComponent(sandboxId)}/ports/${port}/connect`;

/** The sandbox id and port a path names, or undefined when it is not this route's. */
export function parsePortConnectPath(path: string): { sandboxId: string; port: string } | undefined {
  if (!path.startsWith(PORT_CONNECT_PREFIX)) return undefined;
  const parts = path.slice(PORT_CONNECT_PREFIX.length).split("/");
  if (parts.length !== 4 || parts[1] !== "ports" || parts[3] !== "connect") return undefined;
  try {
    return { sandboxId: decodeURIComponent(parts[0] as string), port: parts[2] as string };
  } catch {
    return undefined;
  }
}

/** The subprotocol that carries `token`. */
export function bearerProtocol(token: string): string {
  const bytes = new TextEncoder().encode(token);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return PORT_CONNECT_BEARER_PREFIX + btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** The token a subprotocol carries, or undefined when it carries none (or not base64url). */
export function tokenOfProtocol(protocol: string): string | undefined {
  if (!protocol.startsWith(PORT_CONNECT_BEARER_PREFIX)) return undefined;
  const encoded = protocol.slice(PORT_CONNECT_BEARER_PREFIX.length);
  if (!/^[A-Za-z0-9_-]*$/.test(encoded)) return undefined;
  try {
    const binary = atob(encoded.replace(/-/g, "+").replace(/_/g, "/"));
    return new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
  } catch {
    return undefined;
  }
}
