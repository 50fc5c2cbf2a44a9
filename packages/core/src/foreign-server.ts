/**
 * Telling "this endpoint is not an sbx server" from an sbx server's own errors: a wrong path
 * prefix or another web server (an HTTP error status without a Connect error body: sbx
 * answers every error with one, unknown methods included), `https://` pointed at a plain
 * HTTP server (the TLS handshake fails), or HTTP/2 spoken to an HTTP/1.1-only server.
 */
import { Code, type RpcFailureLike } from "./rpc-failure.js";

const TLS_MISMATCH =
  /wrong version number|packet length too long|ERR_SSL_|SSL routines|EPROTO|handshake failure|corrupt message/i;

/**
 * Why `failure` shows the endpoint is not an sbx server, or undefined when it does not. A
 * failure with error details came from a server that answered with a Connect error body (the
 * sbx server's own, even when its message tells of a registry's TLS handshake failing).
 */
export function notAnSbxServerReason(failure: RpcFailureLike): string | undefined {
  if (failure.details.length > 0) return undefined;
  const status = /^HTTP (\d{3})$/.exec(failure.rawMessage)?.[1];
  if (status === "404" || status === "405") return `it answered HTTP ${status} without a Connect error`;
  if (/^unsupported content type /.test(failure.rawMessage)) return `it answered with an ${failure.rawMessage}`;
  const text = messagesOf(failure);
  if (TLS_MISMATCH.test(text)) {
    return `the TLS handshake failed, as when https:// points at a plain HTTP server: ${firstLine(text)}`;
  }
  if (failure.code === Code.Internal && failure.rawMessage === "Protocol error") {
    return "it does not speak HTTP/2 (a plain HTTP/1.1 server?)";
  }
  return undefined;
}

/** The failure's message and those of its causes (a fetch failure keeps the TLS error two levels down). */
function messagesOf(failure: RpcFailureLike): string {
  const parts = [failure.rawMessage];
  let cause: unknown = failure.cause;
  for (let depth = 0; depth < 5 && typeof cause === "object" && cause !== null; depth++) {
    const { message, code } = cause as { message?: unknown; code?: unknown };
    if (typeof message === "string") parts.push(message);
    if (typeof code === "string") parts.push(code);
    cause = (cause as { cause?: unknown }).cause;
  }
  return parts.join(" | ");
}

const firstLine = (text: string): string => {
  const tls = text.split(" | ").find((part) => TLS_MISMATCH.test(part)) ?? text;
  return tls.trim().split("\n")[0] as string;
};
