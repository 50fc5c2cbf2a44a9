/**
 * Why a retained output stream cannot serve an offset, as Connect errors shared by the server
 * and the fake: bytes dropped by the retention bound (OUT_OF_RANGE with an OutputDropped
 * detail naming the first kept offset, which @sbx/core turns into `OutputDroppedError`), and
 * bytes the server failed to store (DATA_LOSS, `OutputLostError`).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { OutputDroppedSchema } from "@sbx/proto";

export function outputDropped(offset: number, firstKeptOffset: number): ConnectError {
  return new ConnectError(
    `bytes before offset ${firstKeptOffset} of this stream were dropped (the server keeps a bounded amount of output per stream); offset ${offset} cannot be read, read from ${firstKeptOffset}`,
    Code.OutOfRange,
    undefined,
    [{ desc: OutputDroppedSchema, value: { firstKeptOffset: BigInt(firstKeptOffset) } }],
  );
}

export function outputLost(length: number, reason: string): ConnectError {
  return new ConnectError(
    `the server could not store this stream's output past byte ${length} (${reason}); the rest of it is lost`,
    Code.DataLoss,
  );
}
