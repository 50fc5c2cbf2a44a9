/**
 * A blob's bytes from a registry, resumable: they are appended to a partial file in the store
 * as they arrive. A download that breaks off mid-way is resumed at once with an HTTP Range
 * request (a few times, while it gets somewhere), the stream going on as if nothing happened;
 * a pull that failed all the same and is tried again replays what it had from the file and
 * asks only for the rest. The caller checks the digest of the whole and removes the partial
 * file once it is done with it (kept, or refused).
 */
import { closeSync, constants, createReadStream, fstatSync, ftruncateSync, openSync, writeSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import type { BlobResponse } from "./registry-client.js";
import { ImageStoreError } from "./store-errors.js";

/** Resumes after a broken-off transfer, each attempt after one that got no byte waiting longer. */
const MAX_RESUMES = 3;
const RESUME_DELAY_MS = 200;

export interface ResumableDownload {
  /** Where the bytes so far are kept (in the store: root-only). */
  readonly partialPath: string;
  /** The blob's size, as its descriptor says. */
  readonly size: number;
  /** Asks the registry for the blob from `offset` on. */
  readonly fetchFrom: (offset: number) => Promise<BlobResponse>;
  readonly signal?: AbortSignal | undefined;
}

const brokenOff = (error: unknown) => error instanceof ImageStoreError && error.kind === "connection";

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
    }
    if (have > 0) {
      const kept = createReadStream("", { fd, autoClose: false, start: 0, end: have - 1, highWaterMark: 1 << 20 });
      for await (const chunk of kept) yield chunk as Buffer;
    }
    if (response === undefined) return;
    let position = have;
    let failures = 0;
    let body = response.body;
    let skip = 0; // bytes a registry that ignored the Range sends again
    for (;;) {
      try {
        for await (const data of body) {
          let chunk = data;
          if (skip > 0) {
            const dropped = Math.min(skip, chunk.length);
            skip -= dropped;
            chunk = chunk.subarray(dropped);
            if (chunk.length === 0) continue;
          }
          let offset = 0;
          while (offset < chunk.length)
            offset += writeSync(fd, chunk, offset, chunk.length - offset, position + offset);
          position += chunk.length;
          failures = 0;
          yield chunk;
        }
        return;
      } catch (error) {
        if (!brokenOff(error) || position >= options.size || failures >= MAX_RESUMES) throw error;
      }
      // Broken off: ask for the rest (the registry may be back in a moment).
      for (;;) {
        failures++;
        await sleep(RESUME_DELAY_MS * failures, undefined, { signal: options.signal });
        try {
          const next = await options.fetchFrom(position);
          skip = position - next.start;
          body = next.body;
          break;
        } catch (error) {
          if (!brokenOff(error) || failures >= MAX_RESUMES) throw error;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
}
