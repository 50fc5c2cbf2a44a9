/**
 * A Node request as Connect's universal request, for the front door (listen.ts): what
 * connect-node's `universalRequestFromNodeRequest` makes, with two differences.
 *
 * - A request that names no authority (an HTTP/1.0 request without a Host header), or one that
 *   is not a host (`Host: a b`), is not one: the caller answers it 400. connect-node throws
 *   there, and a throw from the request listener ends the server with every sandbox in it.
 * - Its signal is aborted only when the request goes before its answer is complete (a client
 *   that hung up, a reset stream). Once an answer is complete Connect has let go of the signal
 *   (it aborts the call's own context at the end of every call), so aborting it then would
 *   only cost an exception object and an event dispatch on every request.
 */
import { Code, ConnectError, type ContextValues } from "@connectrpc/connect";
import type { UniversalServerRequest } from "@connectrpc/connect/protocol";

type NodeRequest = import("node:http").IncomingMessage | import("node:http2").Http2ServerRequest;
type NodeResponse = import("node:http").ServerResponse | import("node:http2").Http2ServerResponse;

export function universalRequestOf(
  req: NodeRequest,
  res: NodeResponse,
  contextValues: ContextValues,
): UniversalServerRequest | undefined {
  const authority = "authority" in req ? req.authority : req.headers.host;
  if (!authority) return undefined;
  const encrypted = "encrypted" in req.socket && req.socket.encrypted;
  let url: string;
  try {
    url = new URL(req.url ?? "", `${encrypted ? "https" : "http"}://${authority}`).toString();
  } catch {
    return undefined;
  }
  const controller = new AbortController();
  if ("stream" in req) {
    const stream = req.stream;
    req.once("close", () => {
      if (res.writableFinished && !stream.rstCode) return;
      controller.abort(resetError(stream.rstCode));
    });
  } else {
    const h1 = req as import("node:http").IncomingMessage;
    const onError = (error: Error) => gone(error);
    const onClose = () => gone(h1.errored ?? undefined);
    const gone = (error: Error | undefined) => {
      h1.off("error", onError);
      res.off("close", onClose);
      if (!error && res.writableFinished) return;
      controller.abort(error ? clientGone(error) : undefined);
    };
    h1.once("error", onError);
    // The response's close, not the request's: Node closes a request once its body is read.
    res.once("close", onClose);
  }
  return {
    httpVersion: req.httpVersion,
    method: req.method ?? "",
    url,
    header: webHeaders(req.headers),
    body: req as AsyncIterable<Uint8Array>,
    signal: controller.signal,
    contextValues,
  };
}

/** Node's request headers as fetch's Headers, HTTP/2 pseudo-headers left out. */
function webHeaders(headers: import("node:http").IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const name in headers) {
    if (name.startsWith(":")) continue;
    const value = headers[name];
    if (value === undefined) continue;
    if (typeof value === "string") out.append(name, value);
    else for (const v of value) out.append(name, v);
  }
  return out;
}

/**
 * Why a request's HTTP/2 stream closed early, in Connect's terms (the mapping gRPC gives
 * HTTP/2 error codes); a close without an error code (NO_ERROR, STREAM_CLOSED) is a plain abort.
 */
function resetError(rstCode: number): ConnectError | undefined {
  const code = RESET_CODES[rstCode] ?? (rstCode === 0 || rstCode === 5 ? undefined : Code.Internal);
  if (code === undefined) return undefined;
  return new ConnectError(`the HTTP/2 stream was reset (error code 0x${rstCode.toString(16)})`, code);
}

const RESET_CODES: Record<number, Code> = {
  7: Code.Unavailable, // REFUSED_STREAM
  8: Code.Canceled, // CANCEL
  11: Code.ResourceExhausted, // ENHANCE_YOUR_CALM
  12: Code.PermissionDenied, // INADEQUATE_SECURITY
  13: Code.PermissionDenied, // HTTP_1_1_REQUIRED
};

/** An HTTP/1.1 request that failed mid-way: its client went (a reset, a write after the end). */
function clientGone(error: Error): ConnectError {
  const failure = ConnectError.from(error, Code.Aborted);
  if (failure !== error) failure.cause = error;
  return failure;
}
