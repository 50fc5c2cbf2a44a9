/**
 * A layer's bytes, uncompressed: gzip and zstd are found from the bytes themselves (as Docker
 * does, whatever the media type says), anything else is taken for a plain tar. zstd needs a
 * Node whose zlib has it (22.15 and later); without it such a layer is "unsupported".
 */
import { Readable, type Transform } from "node:stream";
import * as zlib from "node:zlib";
import { storeError } from "./store-errors.js";

const GZIP = [0x1f, 0x8b];
const ZSTD = [0x28, 0xb5, 0x2f, 0xfd];
/** Output chunks of 256 KiB: fewer, larger writes into the tar parser. */
const CHUNK = 256 * 1024;
/** How far decompression (in the thread pool) may run ahead of the unpacker (on the main thread). */
const AHEAD = 4 * 1024 * 1024;

const startsWith = (head: Buffer, magic: number[]) => magic.every((byte, i) => head[i] === byte);

type ZstdFactory = (options?: { chunkSize?: number; readableHighWaterMark?: number }) => Transform;
const createZstdDecompress = (zlib as unknown as { createZstdDecompress?: ZstdFactory }).createZstdDecompress;

export const zstdSupported = (): boolean => createZstdDecompress !== undefined;

/** `source` uncompressed. `what` names it in errors ("layer sha256:… of …"). */
export async function* decompressed(
  source: AsyncIterable<Uint8Array>,
  what: string,
): AsyncGenerator<Uint8Array, void, undefined> {
  const iterator = source[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  let ended = false;
  try {
    while (head.length < ZSTD.length) {
      const next = await iterator.next();
      if (next.done) {
        ended = true;
        break;
      }
      head = Buffer.concat([head, next.value]);
    }
  } catch (error) {
    await iterator.return?.();
    throw error;
  }
  const rest: AsyncIterable<Uint8Array> = {
    [Symbol.asyncIterator]: () => (ended ? emptyIterator() : iterator),
  };
  let transform: Transform | undefined;
  if (startsWith(head, GZIP))
    transform = zlib.createGunzip({ chunkSize: CHUNK, readableHighWaterMark: AHEAD } as zlib.ZlibOptions);
  else if (startsWith(head, ZSTD)) {
    if (createZstdDecompress === undefined) {
      await iterator.return?.();
      throw storeError(
        "unsupported",
        `${what} is zstd-compressed (application/vnd.oci.image.layer.v1.tar+zstd), which this Node (${process.version}) cannot decompress: use Node 22.15 or later`,
      );
    }
    transform = createZstdDecompress({ chunkSize: CHUNK, readableHighWaterMark: AHEAD });
  }
  if (transform === undefined) {
    if (head.length > 0) yield head;
    yield* rest;
    return;
  }
  const input = Readable.from(prepend(head, rest), { objectMode: false });
  input.on("error", (error) => transform.destroy(error));
  input.pipe(transform);
  try {
    for await (const chunk of transform) yield chunk as Buffer;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "";
    if (code.startsWith("Z_") || code.startsWith("ERR_ZSTD") || code === "ERR_ZLIB_INITIALIZATION_FAILED") {
      throw storeError("invalid", `${what} does not decompress: ${(error as Error).message}`, error);
    }
    throw error;
  } finally {
    input.destroy();
    transform.destroy();
  }
}

async function* prepend(head: Buffer, rest: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array, void, undefined> {
  if (head.length > 0) yield head;
  yield* rest;
}

function emptyIterator(): AsyncIterator<Uint8Array> {
  return { next: async () => ({ done: true, value: undefined }) };
}

/**
 * Passes `source` through, counting its bytes into `onBytes` and refusing ("quota") to pass
 * more than `limit`: a decompression bomb stops at the limit.
 */
export async function* limited(
  source: AsyncIterable<Uint8Array>,
  limit: number,
  what: string,
  onBytes?: (total: number) => void,
): AsyncGenerator<Uint8Array, void, undefined> {
  let total = 0;
  for await (const chunk of source) {
    total += chunk.byteLength;
    if (total > limit) {
      throw storeError("quota", `${what} unpacks to more than ${limit} bytes, the store's limit for one layer`);
    }
    onBytes?.(total);
    yield chunk;
  }
}
