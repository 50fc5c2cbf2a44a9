/**
 * How the layer store knows its layers reached the disk, without an fsync per file on the
 * pull's path: a layer is written through the page cache and renamed into place whole (so a
 * crashed server never finds half a layer), and, a little after layers were added, one
 * `syncfs` of the store's file system (coreutils' `sync -f`, in the background) puts them on
 * the disk; the store then marks them synced. A power cut can lose what was not synced yet:
 * at open, the store removes the layers made in an earlier boot that were never marked (and
 * the images that need them), so a half-written layer is never used — pulled again instead.
 *
 * What a sync covers: the layers recorded before it started (the store's layer sequence, taken
 * then: a number that never goes back, so a layer recorded later is never counted in, whatever
 * was deleted meanwhile), and only once `sync -f` exited 0. A sync that fails or is killed
 * marks nothing and is tried again a delay later.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { type LongTimer, longTimeout } from "./long-timer.js";

/** This boot of the machine (a new one after every reboot, a power cut's included). */
export function currentBootId(): string {
  return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
}

/** Syncs the file system that holds `dir` (coreutils' `sync -f`: syncfs); rejects unless it exited 0. */
export function syncFileSystem(dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile("sync", ["-f", dir], (error) => (error === null ? resolve() : reject(error)));
    child.unref();
  });
}

export interface DiskSyncOptions {
  /** A directory on the file system to sync. */
  readonly dir: string;
  /** How long after a layer was added (or a sync failed) the sync runs. */
  readonly delayMs: number;
  /** Called right before a sync starts: what it will cover (the store's layer sequence now). */
  readonly mark: () => number;
  /** Called when a sync that started at `mark` is done. */
  readonly synced: (mark: number) => void;
  /** The sync itself (default: {@link syncFileSystem}). */
  readonly sync?: ((dir: string) => Promise<void>) | undefined;
}

export class DiskSync {
  readonly #options: DiskSyncOptions;
  #timer: LongTimer | undefined;
  #running = false;
  #again = false;
  #closed = false;

  constructor(options: DiskSyncOptions) {
    this.#options = options;
  }

  /** Layers were added (or are still unsynced): sync soon (one sync for the layers of a burst of pulls). */
  request(): void {
    if (this.#closed) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    if (this.#timer !== undefined) return;
    this.#timer = longTimeout(() => void this.#run(), this.#options.delayMs);
  }

  async #run(): Promise<void> {
    this.#timer = undefined;
    if (this.#closed) return;
    this.#running = true;
    const mark = this.#options.mark();
    let ok = false;
    try {
      await (this.#options.sync ?? syncFileSystem)(this.#options.dir);
      ok = true;
    } catch {
      // Marks nothing: those layers stay unsynced, and the sync is tried again below.
    }
    this.#running = false;
    if (this.#closed) return;
    if (ok) this.#options.synced(mark);
    if (this.#again || !ok) {
      this.#again = false;
      this.request();
    }
  }

  close(): void {
    this.#closed = true;
    this.#timer?.clear();
    this.#timer = undefined;
  }
}
