/**
 * The state store's checkpointer (see wal-checkpointer.ts), in a worker thread of its own: its
 * own connection to the database copies the write-ahead log into it, fsyncs and all, off the
 * server's event loop. Imports Node built-ins only (the tests run it from its source).
 */
import { DatabaseSync } from "node:sqlite";
import { parentPort, workerData } from "node:worker_threads";

const db = new DatabaseSync((workerData as { path: string }).path);
// A checkpoint waits for the server's writer rather than failing at once.
db.exec("PRAGMA busy_timeout = 5000");
const checkpoint = db.prepare("PRAGMA wal_checkpoint(PASSIVE)");

parentPort?.on("message", () => {
  try {
    const row = checkpoint.get() as { busy: number; log: number; checkpointed: number };
    parentPort?.postMessage({ busy: row.busy, log: row.log, checkpointed: row.checkpointed });
  } catch (error) {
    parentPort?.postMessage({ error: String(error) });
  }
});
