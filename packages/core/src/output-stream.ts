/**
 * Resumable output: one process stream (stdout or stderr) read from a byte offset as an
 * Effect `Stream`. When the connection drops or the server stream ends without its eof
 * marker, the read is reopened at the first byte not yet delivered, so no byte is lost or
 * repeated. Retries follow the client's retry schedule, reset whenever bytes arrive.
 *
 * With raw HTTP (see raw-routes.ts) the bytes come through the raw stream, and
 * ReadOutput is asked only for the end marker once the raw body has ended.
 */

import type { ExitStatus } from "@sbx/proto";
import { OutputStream } from "@sbx/proto/wire";
import * as Effect from "effect/Effect";
import * as Stream from "effect/Stream";
import type { SandboxError } from "./errors.js";
import { ConnectionError, InternalError } from "./errors.js";
import { type RawHttpClient, rawOutputPath } from "./raw-routes.js";
import { sandboxEndedError } from "./returncode.js";
import { retryingStream, SbxConnection, type SbxConnectionShape } from "./rpc.js";
import { markTransient, toSandboxError } from "./rpc-errors.js";
import { type TextChunk, Utf8Decoder } from "./utf8.js";

export type OutputName = "stdout" | "stderr";

export interface OutputSource {
  readonly sandboxId: string;
  readonly processId: string;
  readonly stream: OutputName;
}

/** Where a resumable read has got to; shared across the attempts of one read. */
interface ReadCursor {
  offset: number;
  /** Still reading through the raw stream (false once its body ended, or when there is none). */
  raw: boolean;
}

/** An output chunk with the byte offset of its first byte within its stream. */
export interface OutputBytes {
  readonly offset: number;
  readonly data: Uint8Array;
}

/** Bytes through the raw stream, until its body ends (then `cursor.raw` turns false). */
async function* rawAttempt(
  reader: RawHttpClient,
  rpc: SbxConnectionShape,
  source: OutputSource,
  cursor: ReadCursor,
  signal: AbortSignal,
): AsyncGenerator<OutputBytes> {
  try {
    const body = await reader.get({
      route: "output",
      path: rawOutputPath(source.sandboxId, source.processId, source.stream, cursor.offset),
      headers: rpc.headers,
      signal,
    });
    if (body) {
      for await (const data of body) {
        const chunk = { offset: cursor.offset, data };
        cursor.offset += data.byteLength;
        yield chunk;
      }
    }
  } catch (error) {
    if (signal.aborted) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw markTransient(new ConnectionError(`raw output stream of ${source.processId} failed: ${reason}`));
  }
  // Ended (or not offered): the end marker, and anything the body did not carry, via ReadOutput.
  cursor.raw = false;
}

async function* readAttempt(
  rpc: SbxConnectionShape,
  source: OutputSource,
  cursor: ReadCursor,
  controller: AbortController,
): AsyncGenerator<OutputBytes> {
  try {
    const responses = rpc.processes.readOutput(
      {
        sandboxId: source.sandboxId,
        processId: source.processId,
        stream: source.stream === "stdout" ? OutputStream.STDOUT : OutputStream.STDERR,
        offset: BigInt(cursor.offset),
      },
      { signal: controller.signal, headers: rpc.headers },
    );
    // The end marker, once it has arrived. The response is still read to its end after it, so
    // the HTTP/2 stream is released (a stream left half-read keeps its session, and so the
    // process, alive).
    let end: { sandboxEnded: boolean; sandboxExitStatus?: ExitStatus | undefined } | undefined;
    try {
      for await (const message of responses) {
        if (end) continue;
        const start = Number(message.offset);
        if (start > cursor.offset) {
          throw new InternalError(`output of ${source.processId} skipped from byte ${cursor.offset} to ${start}`);
        }
        // After a resume the server may repeat bytes we already have; drop them.
        const data = start < cursor.offset ? message.data.subarray(cursor.offset - start) : message.data;
        if (data.byteLength > 0) {
          const chunk = { offset: cursor.offset, data };
          cursor.offset += data.byteLength;
          yield chunk;
        }
        if (message.eof) end = message;
      }
    } catch (error) {
      if (!end) throw error; // after the end marker, a failure while closing changes nothing
    }
    if (!end) {
      throw markTransient(new ConnectionError(`output stream of ${source.processId} ended before its end marker`));
    }
    if (end.sandboxEnded) {
      throw sandboxEndedError(source.sandboxId, end.sandboxExitStatus, `${source.stream} of ${source.processId}`);
    }
  } finally {
    // Leaving early (consumer stopped, fiber interrupted) cancels the server stream.
    controller.abort();
  }
}

/**
 * One read attempt as an async iterable whose `return()` cancels the server stream at once.
 * An async generator's own `return()` waits for its pending `next()` (here: the next message
 * from the server, which may be minutes away), so a consumer that stops reading would
 * otherwise stay attached to the command until more output arrives.
 */
function attemptIterable(
  rpc: SbxConnectionShape,
  source: OutputSource,
  cursor: ReadCursor,
): AsyncIterable<OutputBytes> {
  return {
    [Symbol.asyncIterator]() {
      const controller = new AbortController();
      const reader = rpc.rawHttp;
      const reads =
        cursor.raw && reader
          ? (async function* () {
              yield* rawAttempt(reader, rpc, source, cursor, controller.signal);
              yield* readAttempt(rpc, source, cursor, controller);
            })()
          : readAttempt(rpc, source, cursor, controller);
      return {
        next: () => reads.next(),
        return: (value?: unknown) => {
          controller.abort();
          return reads.return(value as undefined);
        },
      };
    },
  };
}

/** The bytes of one process stream from `fromOffset` to its end, surviving dropped connections. */
export const outputChunks = (
  source: OutputSource,
  fromOffset = 0,
): Stream.Stream<OutputBytes, SandboxError, SbxConnection> =>
  Stream.unwrap(
    Effect.gen(function* () {
      const rpc = yield* SbxConnection;
      const cursor: ReadCursor = { offset: fromOffset, raw: rpc.rawHttp !== undefined };
      const attempt = Stream.suspend(() =>
        Stream.fromAsyncIterable(attemptIterable(rpc, source, cursor), (error) =>
          toSandboxError(error, `reading ${source.stream} of ${source.processId}`, rpc.config.endpoint),
        ),
      );
      return retryingStream(attempt, rpc.config);
    }),
  );

export const outputBytes = (
  source: OutputSource,
  fromOffset = 0,
): Stream.Stream<Uint8Array, SandboxError, SbxConnection> =>
  outputChunks(source, fromOffset).pipe(Stream.map((chunk) => chunk.data));

/**
 * UTF-8 text with the byte range each piece came from (see `Utf8Decoder`); a character split
 * across chunks (or across a resume) is never broken. Resume after the `end` of the last piece.
 */
export const outputTextChunks = (
  source: OutputSource,
  fromOffset = 0,
): Stream.Stream<TextChunk, SandboxError, SbxConnection> =>
  outputChunks(source, fromOffset).pipe(
    Stream.mapAccum(
      () => new Utf8Decoder(fromOffset),
      (decoder, chunk) => {
        const text = decoder.decode(chunk.offset, chunk.data);
        return [decoder, text ? [text] : []] as const;
      },
      {
        onHalt: (decoder) => {
          const rest = decoder.end();
          return rest ? [rest] : [];
        },
      },
    ),
  );

/** UTF-8 text; a character split across chunks (or across a resume) is never broken. */
export const outputText = (source: OutputSource, fromOffset = 0): Stream.Stream<string, SandboxError, SbxConnection> =>
  outputTextChunks(source, fromOffset).pipe(Stream.map((chunk) => chunk.text));
