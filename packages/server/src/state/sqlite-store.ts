/** The embedded state store: SQLite (node:sqlite) in the data dir, records as protobuf. */

import { DatabaseSync } from "node:sqlite";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { type Process, ProcessSchema, SandboxSchema } from "@sbx/proto";
import type { StateStore, StoredSandbox } from "@sbx/server-kit";
import { WalCheckpointer } from "./wal-checkpointer.js";

export class SqliteStateStore implements StateStore {
  readonly #db: DatabaseSync;
  readonly #upsertSandbox;
  readonly #upsertProcess;
  /** Its write-ahead log goes into the database off the event loop (see wal-checkpointer.ts). */
  readonly #checkpointer: WalCheckpointer;

  constructor(path: string) {
    this.#db = new DatabaseSync(path);
    this.#db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
      PRAGMA wal_autocheckpoint = 0;
      PRAGMA busy_timeout = 5000;
      CREATE TABLE IF NOT EXISTS sandboxes (
        id TEXT PRIMARY KEY,
        sequence INTEGER NOT NULL,
        request_id TEXT NOT NULL,
        record BLOB NOT NULL
      );
      CREATE TABLE IF NOT EXISTS processes (
        sandbox_id TEXT NOT NULL,
        process_id TEXT NOT NULL,
        record BLOB NOT NULL,
        PRIMARY KEY (sandbox_id, process_id)
      );
    `);
    this.#upsertSandbox = this.#db.prepare(
      "INSERT INTO sandboxes (id, sequence, request_id, record) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET record = excluded.record",
    );
    this.#upsertProcess = this.#db.prepare(
      "INSERT INTO processes (sandbox_id, process_id, record) VALUES (?, ?, ?) ON CONFLICT(sandbox_id, process_id) DO UPDATE SET record = excluded.record",
    );
    this.#checkpointer = new WalCheckpointer({
      path,
      checkpointHere: () => this.#db.exec("PRAGMA wal_checkpoint(PASSIVE)"),
    });
  }

  load() {
    const sandboxes = this.#db
      .prepare("SELECT sequence, request_id, record FROM sandboxes ORDER BY sequence")
      .all()
      .map((row) => ({
        sequence: Number(row.sequence),
        requestId: String(row.request_id),
        sandbox: fromBinary(SandboxSchema, row.record as Uint8Array),
      }));
    const processes = this.#db
      .prepare("SELECT record FROM processes")
      .all()
      .map((row) => fromBinary(ProcessSchema, row.record as Uint8Array));
    return { sandboxes, processes };
  }

  saveSandbox(record: StoredSandbox): void {
    this.#upsertSandbox.run(
      record.sandbox.id,
      record.sequence,
      record.requestId,
      toBinary(SandboxSchema, record.sandbox),
    );
    this.#checkpointer.wrote();
  }

  saveProcess(process: Process): void {
    this.#upsertProcess.run(process.sandboxId, process.processId, toBinary(ProcessSchema, process));
    this.#checkpointer.wrote();
  }

  deleteProcess(sandboxId: string, processId: string): void {
    this.#db.prepare("DELETE FROM processes WHERE sandbox_id = ? AND process_id = ?").run(sandboxId, processId);
    this.#checkpointer.wrote();
  }

  /** Checkpoints done off the event loop or, failing that, on it; for tests. */
  get checkpoints(): number {
    return this.#checkpointer.done;
  }

  close(): void {
    this.#checkpointer.close();
    // All of the log into the database, and the log emptied, before the server goes.
    this.#db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    this.#db.close();
  }
}
