/**
 * The raw output stream over Node's own HTTP/1.1 client: measured faster than `fetch`
 * (undici) at reading long bodies. Connections are pooled per client and kept alive; idle
 * pooled sockets do not keep the process alive.
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { endpointBase, RAW_OUTPUT_HEADER, type RawOutputReader } from "@sbx/core";

export function nodeRawOutput(endpoint: string): RawOutputReader {
  const base = endpointBase(endpoint);
  const secure = base.startsWith("https:");
  const agent = secure ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  const request = secure ? httpsRequest : httpRequest;
  let unsupported = false;
  return {
    open: ({ path, headers, signal }) =>
      new Promise<AsyncIterable<Uint8Array> | undefined>((resolve, reject) => {
        if (unsupported) return resolve(undefined);
        const req = request(base + path, { agent, headers, signal }, (res: IncomingMessage) => {
          if (res.statusCode !== 200) {
            if (res.headers[RAW_OUTPUT_HEADER] === undefined) unsupported = true;
            res.resume();
            resolve(undefined);
            return;
          }
          resolve(body(res));
        });
        req.on("error", reject);
        req.end();
      }),
    close: () => agent.destroy(),
  };
}

/** The response's chunks; leaving early destroys the response (and its connection). */
async function* body(res: IncomingMessage): AsyncGenerator<Uint8Array> {
  let ended = false;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) yield chunk;
    // A connection cut mid-body ends the stream with `aborted` rather than an error.
    if (!res.complete) throw new Error("the connection closed before the end of the output");
    ended = true;
  } finally {
    if (!ended) res.destroy();
  }
}
