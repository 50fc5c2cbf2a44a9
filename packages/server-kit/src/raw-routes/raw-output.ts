/**
 * The raw output stream: `GET /sbx.v1/output/{sandboxId}/{processId}/{stdout|stderr}?offset=N`
 * answers with the stream's bytes from `offset` as a plain HTTP body, following live output,
 * and ends the body when the stream has ended. It carries no framing and no end marker: a
 * client reads until the body ends, then asks ReadOutput (Connect) from where it got to for
 * the end marker and the sandbox's status. It exists for throughput: the same bytes through
 * Connect pay for protobuf encoding and per-message machinery several times over.
 *
 * Errors are plain statuses with a Connect JSON error body; clients fall back to ReadOutput,
 * which reports the same problem as a typed error (an offset the retention bound dropped, or
 * output the server failed to store, ends the body: ReadOutput from there says which). Every answer carries `x-sbx-raw: output`
 * (see http-answers.ts).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import {
  parseRawOffset,
  parseRawOutputPath,
  RAW_OFFSET_HEADER,
  RAW_OUTPUT_PREFIX,
  RAW_QUERY,
  RAW_STATUS,
} from "@sbx/proto";
import type { Engine } from "../engine/engine.js";
import type { PlainRoute } from "../listen.js";
import { outputDropped } from "../output-errors.js";
import {
  type Authorize,
  clientSignal,
  declineRaw,
  failRaw,
  markRaw,
  type RawCallHook,
  type RawRequest,
  type RawResponse,
  startBody,
  unservedRaw,
  writeBody,
} from "./http-answers.js";

/** Bytes per write to a reader that is behind (no framing here, so no reason to stay small). */
const RAW_MAX_READ = 1024 * 1024;

const fail = (res: RawResponse, status: number, code: Code, message: string) =>
  failRaw(res, new ConnectError(message, code), status);

export function rawOutputRoute(engine: Engine, authorize: Authorize, hook?: RawCallHook): PlainRoute {
  return {
    prefix: RAW_OUTPUT_PREFIX,
    async handle(req: RawRequest, res: RawResponse) {
      markRaw(res, "output");
      const signal = clientSignal(res); // first: a client gone during the hook is still seen
      if (req.method !== "GET")
        return fail(res, RAW_STATUS.methodNotAllowed, Code.Unimplemented, "the output stream is read with GET");
      if (!authorize(req.headers.authorization))
        return fail(res, RAW_STATUS.unauthorized, Code.Unauthenticated, "missing or wrong bearer token");
      const plan = await hook?.("ReadOutput");
      if (plan?.unserved) return unservedRaw(res);
      if (plan?.decline) return declineRaw(res, "ReadOutput");
      const url = new URL(req.url ?? "/", "http://sbx");
      const parts = parseRawOutputPath(url.pathname);
      const offsetText = url.searchParams.get(RAW_QUERY.offset) ?? "0";
      const offset = parseRawOffset(offsetText);
      if (!parts) return fail(res, RAW_STATUS.notFound, Code.NotFound, `no output stream at ${url.pathname}`);
      const { sandboxId, processId, stream } = parts;
      if (offset === undefined) {
        const problem = `offset must be a byte offset, got ${JSON.stringify(offsetText)}`;
        return fail(res, RAW_STATUS.badRequest, Code.InvalidArgument, problem);
      }
      const sandbox = engine.sandboxes.get(sandboxId);
      const process = sandbox?.processes.get(processId);
      if (!sandbox || !process)
        return fail(res, RAW_STATUS.notFound, Code.NotFound, `process ${processId} not found in sandbox ${sandboxId}`);
      const log = stream === "stdout" ? process.stdout : process.stderr;
      if (log.closed && offset > log.length) {
        return fail(
          res,
          RAW_STATUS.rangeNotSatisfiable,
          Code.OutOfRange,
          `offset ${offset} is past the end of the stream (${log.length} bytes)`,
        );
      }
      if (offset < log.firstKeptOffset)
        return failRaw(res, outputDropped(offset, log.firstKeptOffset), RAW_STATUS.rangeNotSatisfiable);
      sandbox.touch();
      const detach = process.lifecycle.attach(signal);
      try {
        startBody(res, {
          "content-type": "application/octet-stream",
          "cache-control": "no-store",
          [RAW_OFFSET_HEADER]: String(offset),
        });
        try {
          for await (const chunk of log.read(offset, signal, RAW_MAX_READ)) {
            await writeBody(res, chunk.data, signal);
          }
        } catch (error) {
          // Bytes dropped or lost on the way: the body ends here, and the client's ReadOutput
          // from where it got to reports the typed error.
          if (signal.aborted || !(error instanceof ConnectError)) throw error;
        }
        res.end();
      } finally {
        detach();
      }
    },
  };
}
