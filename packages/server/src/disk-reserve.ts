/**
 * The free-space reserve of the data dir's filesystem: below it, creates are refused
 * (RESOURCE_EXHAUSTED, QuotaExceededError) with a sentence naming the disk and the numbers.
 */
import { statfs } from "node:fs";
import type { EngineLogger } from "@sbx/server-kit";

/**
 * Default reserve: what sandboxes already running may still write (output up to its bound,
 * writable layers up to their limit) and what the server itself needs (state, a restart)
 * come out of it. A tenth of the filesystem when that is smaller, so a small data disk is not
 * refused outright.
 */
export const DEFAULT_DISK_RESERVE_BYTES = 1024 * 1024 * 1024;

/** Why no sandbox may be created now (the data dir's filesystem is below its reserve), if so. */
export function diskReserveCheck(
  dataDir: string,
  reserveBytes: number | undefined,
  logger: EngineLogger,
): () => Promise<string | undefined> {
  return async () => {
    let stats: { bavail: number; blocks: number; bsize: number };
    try {
      stats = await new Promise((resolve, reject) =>
        statfs(dataDir, (error, result) => (error ? reject(error) : resolve(result))),
      );
    } catch (error) {
      logger.error("cannot read the data dir's free space", { error: String(error) });
      return undefined;
    }
    const free = stats.bavail * stats.bsize;
    const reserve = reserveBytes ?? Math.min(DEFAULT_DISK_RESERVE_BYTES, (stats.blocks * stats.bsize) / 10);
    if (free >= reserve) return undefined;
    const mib = (bytes: number) => `${Math.floor(bytes / (1024 * 1024))} MiB`;
    return `the server's disk is nearly full: ${mib(free)} free on the filesystem of its data dir (${dataDir}), below its reserve of ${mib(reserve)}; no sandbox can be created until space is freed`;
  };
}
