/**
 * What the server persists, behind an interface so a shared database can replace the
 * embedded SQLite store when several servers run.
 */
import type { Process, Sandbox } from "@sbx/proto";

export interface StoredSandbox {
  readonly sandbox: Sandbox;
  readonly requestId: string;
  /** Creation order, for stable newest-first listing and cursors. */
  readonly sequence: number;
}

export interface StateStore {
  /** Every sandbox and process ever recorded (the server keeps them in memory). */
  load(): { sandboxes: StoredSandbox[]; processes: Process[] };
  saveSandbox(record: StoredSandbox): void;
  saveProcess(process: Process): void;
  /** Forgets a process whose TTL ran out. */
  deleteProcess(sandboxId: string, processId: string): void;
  close(): void;
}
