/**
 * Raw HTTP over Node's own HTTP/1.1 client: measured faster than `fetch` (undici) at long
 * bodies. Connections are pooled per client and kept alive; idle pooled sockets do not keep
 * the process alive.
 */
import { type ClientRequest, Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import type { Socket } from "node:net";
import {
  endpointBase,
  parseJson,
  RAW_HEADER,
  type RawAnswer,
  type RawBody,
  type RawHttpClient,
  type RawRoute,
  RawRouteMemo,
} from "@sbx/core/adapter";

export function nodeRawHttp(endpoint: string): RawHttpClient {
  const base = endpointBase(endpoint);
  const secure = base.startsWith("https:");
  const agent = secure ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  const request = secure ? httpsRequest : httpRequest;
  const memo = new RawRouteMemo();
  const marker = (res: IncomingMessage) => res.headers[RAW_HEADER] as string | undefined;
  /** A PUT's or POST's answer: its status and JSON body, or undefined when the server lacks the route. */
  const readAnswer = (
    res: IncomingMessage,
    route: RawRoute,
    resolve: (answer: RawAnswer | undefined) => void,
    reject: (error: Error) => void,
  ) => {
    const pieces: Buffer[] = [];
    res.on("data", (piece: Buffer) => pieces.push(piece));
    res.on("error", reject);
    res.on("end", () => {
      if (!res.complete) return reject(new Error("the connection closed before the end of the answer"));
      if (!memo.saw(route, marker(res))) return resolve(undefined);
      resolve({ status: res.statusCode ?? 0, json: parseJson(Buffer.concat(pieces).toString("utf8")) });
    });
  };
  return {
    get: ({ route, path, headers, signal }) =>
      new Promise<AsyncIterable<Uint8Array> | undefined>((resolve, reject) => {
        if (memo.missing(route)) return resolve(undefined);
        const req = request(base + path, { agent, headers, signal }, (res) => {
          if (res.statusCode !== 200) {
            memo.saw(route, marker(res));
            res.resume();
            resolve(undefined);
            return;
          }
          resolve(body(res));
        });
        req.on("error", reject);
        req.on("socket", noDelay);
        req.end();
      }),
    put: ({ route, path, headers, signal, body: data }) =>
      new Promise((resolve, reject) => {
        if (memo.missing(route)) return resolve(undefined);
        const req = request(
          base + path,
          {
            agent,
            method: "PUT",
            headers: {
              ...headers,
              "content-type": "application/octet-stream",
              "content-length": data.reduce((n, piece) => n + piece.byteLength, 0),
            },
            signal,
          },
          (res) => readAnswer(res, route, resolve, reject),
        );
        req.on("error", reject);
        req.on("socket", noDelay);
        // Written piece by piece (no copy into one buffer); the socket's own buffering applies.
        for (const piece of data) req.write(piece);
        req.end();
      }),
    post: ({ route, path, headers, signal, body: data }) =>
      new Promise((resolve, reject) => {
        if (memo.missing(route)) return resolve(undefined);
        let sent = false;
        const req = request(
          base + path,
          {
            agent,
            method: "POST",
            headers: {
              ...headers,
              "content-type": "application/octet-stream",
              ...(data instanceof Uint8Array ? { "content-length": data.byteLength } : {}),
            },
            signal,
          },
          (res) => {
            // Answered before the whole body went out (a refusal): stop sending it.
            res.on("end", () => {
              if (!sent) req.destroy();
            });
            readAnswer(res, route, resolve, reject);
          },
        );
        req.on("error", reject);
        req.on("socket", noDelay);
        void sendBody(req, data).then(
          () => {
            sent = true;
          },
          (error: unknown) => req.destroy(error as Error),
        );
      }),
    close: () => agent.destroy(),
  };
}

/**
 * Writes a streamed body piece by piece, each handed to the socket before the next is asked
 * for (its source may reuse the memory), then ends the request.
 */
async function sendBody(req: ClientRequest, data: RawBody): Promise<void> {
  if (data instanceof Uint8Array) {
    req.end(data);
    return;
  }
  const source: AsyncIterable<Uint8Array> =
    data instanceof Blob ? (data.stream() as unknown as AsyncIterable<Uint8Array>) : data;
  for await (const piece of source) {
    if (req.destroyed) return;
    await new Promise<void>((resolve, reject) => req.write(piece, (error) => (error ? reject(error) : resolve())));
  }
  req.end();
}

/** Small requests and answers go out at once (no Nagle delay waiting for an ACK). */
const noDelay = (socket: Socket) => socket.setNoDelay(true);

/** The response's chunks; leaving early destroys the response (and its connection). */
async function* body(res: IncomingMessage): AsyncGenerator<Uint8Array> {
  let ended = false;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) yield chunk;
    // A connection cut mid-body ends the stream with `aborted` rather than an error.
    if (!res.complete) throw new Error("the connection closed before the end of the body");
    ended = true;
  } finally {
    if (!ended) res.destroy();
  }
}
