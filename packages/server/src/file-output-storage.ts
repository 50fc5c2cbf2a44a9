/**
 * The server's output storage: each process stream in segment files under
 * `<dataDir>/sandboxes/<id>/output/` (see file-output-log.ts), read back after a restart.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { OutputStorage } from "@sbx/server-kit";
import { FileOutputLog } from "./file-output-log.js";

const safe = (id: string) => id.replace(/[^A-Za-z0-9._-]/g, "_");

export function fileOutputStorage(dataDir: string): OutputStorage {
  const outputDir = (sandboxId: string) => join(dataDir, "sandboxes", safe(sandboxId), "output");
  // A stream's name in its (normalized) dir: `safe` leaves no "/" and the suffix no "." or "..".
  const base = (dir: string, processId: string, stream: string) => `${dir}/${safe(processId)}.${stream}`;
  // Each sandbox's output dir, made by its first stream, not by every stream's open (nothing
  // removes one while the server runs).
  const made = new Map<string, string>();
  return {
    open(sandboxId, processId, stream, options) {
      let dir = made.get(sandboxId);
      if (dir === undefined) {
        dir = outputDir(sandboxId);
        mkdirSync(dir, { recursive: true });
        made.set(sandboxId, dir);
      }
      return new FileOutputLog(base(dir, processId, stream), {
        ...(options.retentionBytes === undefined ? {} : { retentionBytes: options.retentionBytes }),
        ...(options.onError ? { onError: options.onError } : {}),
      });
    },
    restore: (sandboxId, processId, stream) => FileOutputLog.restore(base(outputDir(sandboxId), processId, stream)),
  };
}
