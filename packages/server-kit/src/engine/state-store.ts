/**
 * The store seam: what the engine persists, behind an interface. The server keeps it in
 * SQLite (a shared database could replace it when several servers run); the fake keeps
 * nothing beyond its own memory.
 */
import type { Process, Sandbox } from "@sbx/proto";

export interface StoredSandbox {
  readonly sandbox: Sandbox;
  readonly requestId: string;
  /** Creation order, for stable newest-first listing and cursors. */
  readonly sequence: number;
}

export interface StateStore {
  /** Every sandbox and process ever recorded (the engine keeps them in memory). */
  load(): { sandboxes: StoredSandbox[]; processes: Process[] };
  saveSandbox(record: StoredSandbox): void;
  saveProcess(process: Process): void;
  /** Forgets a process whose TTL ran out. */
  deleteProcess(sandboxId: string, processId: string): void;
  close(): void;
}

/** A store that remembers nothing across engines: the engine's own maps are the state. */
export const memoryStateStore = (): StateStore => ({
  load: () => ({ sandboxes: [], processes: [] }),
  saveSandbox() {},
  saveProcess() {},
  deleteProcess() {},
  close() {},
});
