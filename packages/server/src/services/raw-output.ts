/**
 * The raw output stream: `GET /sbx.v1/output/{sandboxId}/{processId}/{stdout|stderr}?offset=N`
 * answers with the stream's bytes from `offset` as a plain HTTP body, following live output,
 * and ends the body when the stream has ended. It carries no framing and no end marker: a
 * client reads until the body ends, then asks ReadOutput (Connect) from where it got to for
 * the end marker and the sandbox's status. It exists for throughput: the same bytes through
 * Connect pay for protobuf encoding and per-message machinery several times over.
 *
 * Errors are plain statuses with a Connect-style JSON body; clients fall back to ReadOutput,
 * which reports the same problem as a typed error. Every answer of this route carries
 * `x-sbx-output: raw`, so a client can tell "no such process" from "no such route" (an
 * older server, or the fake), and stop asking the latter.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { ConnectError } from "@connectrpc/connect";
import type { PlainRoute } from "@sbx/server-kit/listen";
import { bearerMatches } from "../auth.js";
import type { Engine } from "../engine.js";

export const RAW_OUTPUT_PREFIX = "/sbx.v1/output/";
/** Bytes per write to a reader that is behind (no framing here, so no reason to stay small). */
const RAW_MAX_READ = 1024 * 1024;

type Response = ServerResponse | Http2ServerResponse;

function fail(res: Response, status: number, code: string, message: string): void {
  (res as ServerResponse).writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify({ code, message }));
}

/** Writes `data`, waiting for the socket to drain when its buffer is full. */
function write(res: Response, data: Uint8Array, signal: AbortSignal): Promise<void> | undefined {
  if ((res as ServerResponse).write(data)) return undefined;
  return new Promise<void>((resolve, reject) => {
    const done = () => {
      res.off("drain", done);
      signal.removeEventListener("abort", done);
      if (signal.aborted) reject(signal.reason);
      else resolve();
    };
    res.on("drain", done);
    signal.addEventListener("abort", done);
  });
}

export function rawOutputRoute(engine: Engine, token: string): PlainRoute {
  return {
    prefix: RAW_OUTPUT_PREFIX,
    async handle(req: IncomingMessage | Http2ServerRequest, res: Response) {
      res.setHeader("x-sbx-output", "raw");
      const exposed = res.getHeader("access-control-expose-headers");
      res.setHeader("access-control-expose-headers", exposed ? `${exposed}, x-sbx-output` : "x-sbx-output");
      if (req.method !== "GET") return fail(res, 405, "unimplemented", "the output stream is read with GET");
      if (!bearerMatches(req.headers.authorization, token)) {
        return fail(res, 401, "unauthenticated", "missing or wrong bearer token");
      }
      const url = new URL(req.url ?? "/", "http://sbx");
      const [sandboxId, processId, stream] = url.pathname
        .slice(RAW_OUTPUT_PREFIX.length)
        .split("/")
        .map(decodeURIComponent);
      const offsetText = url.searchParams.get("offset") ?? "0";
      const offset = Number(offsetText);
      if (!sandboxId || !processId || (stream !== "stdout" && stream !== "stderr")) {
        return fail(res, 404, "not_found", `no output stream at ${url.pathname}`);
      }
      if (!/^\d+$/.test(offsetText) || !Number.isSafeInteger(offset)) {
        return fail(res, 400, "invalid_argument", `offset must be a byte offset, got ${JSON.stringify(offsetText)}`);
      }
      const sandbox = engine.sandboxes.get(sandboxId);
      const process = sandbox?.processes.get(processId);
      if (!sandbox || !process)
        return fail(res, 404, "not_found", `process ${processId} not found in sandbox ${sandboxId}`);
      const log = stream === "stdout" ? process.stdout : process.stderr;
      if (log.closed && offset > log.length) {
        return fail(res, 416, "out_of_range", `offset ${offset} is past the end of the stream (${log.length} bytes)`);
      }
      sandbox.touch();
      const abort = new AbortController();
      const signal = abort.signal;
      res.on("close", () => abort.abort(new ConnectError("client went away")));
      const detach = process.lifecycle.attach(signal);
      try {
        (res as ServerResponse).writeHead(200, {
          "content-type": "application/octet-stream",
          "cache-control": "no-store",
          "x-sbx-offset": String(offset),
        });
        for await (const chunk of log.read(offset, signal, RAW_MAX_READ)) {
          await write(res, chunk.data, signal);
        }
        res.end();
      } finally {
        detach();
      }
    },
  };
}
