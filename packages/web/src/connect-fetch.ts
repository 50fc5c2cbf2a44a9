/**
 * sbx's RPC clients speaking the Connect protocol (binary) over `fetch`, without Connect's
 * client or protobuf-es: messages go through `@sbx/proto/wire`, a codec for exactly the
 * sbx.v1 messages. It keeps about 30 KiB (gzip) of protobuf machinery out of browser bundles.
 *
 * Unary calls are one POST (`application/proto`); server-streaming calls one POST whose
 * request and answer are enveloped messages (`application/connect+proto`), the answer ending
 * with an end-of-stream envelope (JSON) that carries the error, if any. That is all sbx uses.
 */
import { RpcCode as Code, concat, type RpcClients, RpcFailure, rpcFailureFromJson } from "@sbx/core/adapter";
import { decodeMessage, encodeMessage, methods, type WireMethod } from "@sbx/proto/wire";
import type { FetchFunction } from "./fetch.js";

/** What a client method accepts besides the request (the subset of Connect's `CallOptions` sbx uses). */
interface CallOptions {
  readonly signal?: AbortSignal | undefined;
  readonly headers?: HeadersInit | undefined;
  readonly timeoutMs?: number | undefined;
}

const END_STREAM = 0b10;
const COMPRESSED = 0b01;

/** sbx's service clients over `fetch`, for the server at `endpoint`. */
export function fetchClients(endpoint: string, fetchImpl: FetchFunction): RpcClients {
  const base = endpoint.replace(/\/+$/, "");
  const serviceClient = (service: string) => {
    const client: Record<string, unknown> = {};
    for (const [name, method] of Object.entries(methods(service))) {
      client[name] = method.streaming
        ? (request: object, options: CallOptions = {}) => serverStream(base, fetchImpl, method, request, options)
        : (request: object, options: CallOptions = {}) => unary(base, fetchImpl, method, request, options);
    }
    return client;
  };
  return {
    sandboxes: serviceClient("sbx.v1.SandboxService"),
    processes: serviceClient("sbx.v1.ProcessService"),
    files: serviceClient("sbx.v1.FilesystemService"),
    images: serviceClient("sbx.v1.ImageService"),
    network: serviceClient("sbx.v1.NetworkService"),
  } as unknown as RpcClients;
}

/**
 * The request's headers, and its signal: the caller's, and the call's deadline (its
 * `TimeoutError` reads as `deadline_exceeded`, as Connect reports it).
 */
function prepare(options: CallOptions, contentType: string) {
  const headers = new Headers(options.headers);
  headers.set("content-type", contentType);
  headers.set("connect-protocol-version", "1");
  let signal = options.signal;
  if (options.timeoutMs !== undefined && options.timeoutMs > 0) {
    headers.set("connect-timeout-ms", String(Math.ceil(options.timeoutMs)));
    const deadline = AbortSignal.timeout(options.timeoutMs);
    signal = signal ? AbortSignal.any([signal, deadline]) : deadline;
  }
  return { headers, signal };
}

async function unary(
  base: string,
  fetchImpl: FetchFunction,
  method: WireMethod,
  request: object,
  options: CallOptions,
): Promise<unknown> {
  const { headers, signal } = prepare(options, "application/proto");
  const response = await fetchImpl(base + method.path, {
    method: "POST",
    headers,
    body: encodeMessage(method.input, request) as BodyInit,
    signal,
  });
  if (response.status !== 200) throw await failureOf(response);
  return decodeMessage(method.output, new Uint8Array(await response.arrayBuffer()));
}

async function* serverStream(
  base: string,
  fetchImpl: FetchFunction,
  method: WireMethod,
  request: object,
  options: CallOptions,
): AsyncGenerator<unknown> {
  const { headers, signal } = prepare(options, "application/connect+proto");
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  try {
    const response = await fetchImpl(base + method.path, {
      method: "POST",
      headers,
      body: envelope(encodeMessage(method.input, request)) as BodyInit,
      signal,
    });
    if (response.status !== 200) throw await failureOf(response);
    if (!response.body) throw new RpcFailure("the answer has no body", Code.Internal);
    reader = response.body.getReader();
    // Bytes not yet consumed: `buffered` (contiguous), then `arrived` (joined once enough came).
    let buffered: Uint8Array = new Uint8Array(0);
    let arrived: Uint8Array[] = [];
    let available = 0;
    for (;;) {
      const need =
        buffered.byteLength < 5 ? 5 : 5 + new DataView(buffered.buffer, buffered.byteOffset + 1, 4).getUint32(0);
      if (available < need) {
        const { done, value } = await reader.read();
        if (done) throw new RpcFailure("the stream closed before its end", Code.Unavailable);
        arrived.push(value);
        available += value.byteLength;
        continue;
      }
      if (buffered.byteLength < need) {
        buffered = concat(buffered.byteLength > 0 ? [buffered, ...arrived] : arrived);
        arrived = [];
        if (buffered.byteLength < 5 || need === 5) continue; // now the length is known
      }
      const flags = buffered[0] as number;
      const payload = buffered.subarray(5, need);
      buffered = buffered.subarray(need);
      available -= need;
      if (flags & COMPRESSED)
        throw new RpcFailure("the server compressed a message it was not asked to", Code.Internal);
      if (flags & END_STREAM) {
        const end = JSON.parse(new TextDecoder().decode(payload)) as { error?: unknown };
        if (end.error) throw rpcFailureFromJson(end.error, 200);
        return;
      }
      yield decodeMessage(method.output, payload);
    }
  } finally {
    // Left early (or failed): stop the request rather than wait for the server's next message.
    reader?.cancel().catch(() => {});
  }
}

/** A failed call's HTTP answer: Connect's JSON error body, or just its status. */
async function failureOf(response: Response): Promise<RpcFailure> {
  let json: unknown;
  try {
    json = (response.headers.get("content-type") ?? "").includes("json") ? await response.json() : undefined;
  } catch {
    json = undefined;
  }
  return rpcFailureFromJson(json, response.status);
}

/** One enveloped message: flags (0), big-endian length, the message. */
function envelope(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + message.byteLength);
  new DataView(out.buffer).setUint32(1, message.byteLength);
  out.set(message, 5);
  return out;
}
