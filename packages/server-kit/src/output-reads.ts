/**
 * The ReadOutput handler's body, shared by the server and the fake: a process stream served
 * from a byte offset while the reader counts as attached to the command, ending with the end
 * marker that says whether the sandbox (rather than the process) ended it.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { ExitStatus } from "@sbx/proto";
import type { CommandLifecycle } from "./command-lifecycle.js";

/** An offset-addressed output log (the server's file-backed one, the fake's in-memory one). */
export interface OutputLogLike {
  readonly length: number;
  readonly closed: boolean;
  read(from: number, signal?: AbortSignal): AsyncIterable<{ readonly offset: number; readonly data: Uint8Array }>;
}

export interface OutputEnd {
  readonly sandboxEnded: boolean;
  readonly sandboxExitStatus?: ExitStatus | undefined;
}

/** A ReadOutputResponse to send (the init shape the service implementations yield). */
export interface OutputMessage {
  readonly offset: bigint;
  readonly data: Uint8Array;
  readonly eof?: boolean;
  readonly sandboxEnded?: boolean;
  readonly sandboxExitStatus?: ExitStatus;
}

export async function* serveOutput(
  log: OutputLogLike,
  from: number,
  lifecycle: CommandLifecycle,
  signal: AbortSignal,
  end: () => OutputEnd,
): AsyncGenerator<OutputMessage> {
  if (log.closed && from > log.length) {
    throw new ConnectError(`offset ${from} is past the end of the stream (${log.length} bytes)`, Code.OutOfRange);
  }
  let at = from;
  const detach = lifecycle.attach(signal);
  try {
    for await (const chunk of log.read(from, signal)) {
      yield { offset: BigInt(chunk.offset), data: chunk.data };
      at = chunk.offset + chunk.data.byteLength;
    }
  } finally {
    detach();
  }
  const { sandboxEnded, sandboxExitStatus } = end();
  yield {
    offset: BigInt(Math.max(at, log.length)),
    data: new Uint8Array(0),
    eof: true,
    sandboxEnded,
    ...(sandboxExitStatus ? { sandboxExitStatus } : {}),
  };
}
