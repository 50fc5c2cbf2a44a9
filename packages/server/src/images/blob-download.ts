/**
 * A blob's bytes from a registry, resumable: they are appended to a partial file in the store
 * as they arrive, so a pull that broke off (a reset, a registry gone) and is tried again asks
 * only for the rest (an HTTP Range request) and replays what it had from the file. The caller
 * checks the digest of the whole and removes the partial file once it is done with it (kept,
 * or refused).
 */
import { closeSync, constants, createReadStream, fstatSync, ftruncateSync, openSync, writeSync } from "node:fs";
import type { BlobResponse } from "./registry-client.js";

export interface ResumableDownload {
  /** Where the bytes so far are kept (in the store: root-only). */
  readonly partialPath: string;
  /** The blob's size, as its descriptor says. */
  readonly size: number;
  /** Asks the registry for the blob from `offset` on. */
  readonly fetchFrom: (offset: number) => Promise<BlobResponse>;
  /** Bytes of the blob delivered so far (replayed ones included). */
  readonly onBytes?: ((done: number) => void) | undefined;
  /** Bytes the registry sent (not the replayed ones), for tests and logs. */
  readonly onFetched?: ((start: number) => void) | undefined;
}

/** The blob from its first byte: the partial file's bytes, then the registry's (appended to it). */
export async function* resumableDownload(options: ResumableDownload): AsyncGenerator<Uint8Array, void, undefined> {
  const fd = openSync(options.partialPath, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  try {
    let have = fstatSync(fd).size;
    if (have > options.size) {
      ftruncateSync(fd, 0);
      have = 0;
    }
    let response: BlobResponse | undefined;
    if (have < options.size || options.size === 0) {
      response = await options.fetchFrom(have);
      if (response.start !== have) {
        ftruncateSync(fd, 0);
        have = 0;
      }
      options.onFetched?.(response.start);
    }
    let done = 0;
    if (have > 0) {
      for await (const chunk of createReadStream("", {
        fd,
        autoClose: false,
        start: 0,
        end: have - 1,
        highWaterMark: 1 << 20,
      })) {
        done += (chunk as Buffer).length;
        options.onBytes?.(done);
        yield chunk as Buffer;
      }
    }
    if (response === undefined) return;
    let position = have;
    for await (const chunk of response.body) {
      let offset = 0;
      while (offset < chunk.length) offset += writeSync(fd, chunk, offset, chunk.length - offset, position + offset);
      position += chunk.length;
      done += chunk.length;
      options.onBytes?.(done);
      yield chunk;
    }
  } finally {
    closeSync(fd);
  }
}
