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
  const base = (sandboxId: string, processId: string, stream: string) =>
    join(dataDir, "sandboxes", safe(sandboxId), "output", `${safe(processId)}.${stream}`);
  // Output dirs made so far: a sandbox's is made by its first stream, not by every stream's
  // open (nothing removes one while the server runs).
  const made = new Set<string>();
  return {
    open(sandboxId, processId, stream, options) {
      const dir = join(dataDir, "sandboxes", safe(sandboxId), "output");
      if (!made.has(dir)) {
        mkdirSync(dir, { recursive: true });
        made.add(dir);
      }
      return new FileOutputLog(base(sandboxId, processId, stream), {
        ...(options.retentionBytes === undefined ? {} : { retentionBytes: options.retentionBytes }),
        ...(options.onError ? { onError: options.onError } : {}),
      });
    },
    restore: (sandboxId, processId, stream) => FileOutputLog.restore(base(sandboxId, processId, stream)),
  };
}
