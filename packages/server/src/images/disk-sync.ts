/**
 * How the layer store knows its layers reached the disk, without an fsync per file on the
 * pull's path: a layer is written through the page cache and renamed into place whole (so a
 * crashed server never finds half a layer), and, a little after layers were added, one
 * `syncfs` of the store's file system (coreutils' `sync -f`, in the background) puts them on
 * the disk; the store then marks them synced. A power cut can lose what was not synced yet:
 * at open, the store removes the layers made in an earlier boot that were never marked (and
 * the images that need them), so a half-written layer is never used — pulled again instead.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";

/** This boot of the machine (a new one after every reboot, a power cut's included). */
export function currentBootId(): string {
  return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
}

export class DiskSync {
  readonly #dir: string;
  readonly #delayMs: number;
  /** Called before a sync starts: what it will cover (the store's newest layer record). */
  readonly #mark: () => number;
  /** Called when a sync covering `mark` is done. */
  readonly #synced: (mark: number) => void;
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #again = false;
  #closed = false;

  /** Syncs the file system of `dir` `delayMs` after a layer was added. */
  constructor(dir: string, delayMs: number, mark: () => number, synced: (mark: number) => void) {
    this.#dir = dir;
    this.#delayMs = delayMs;
    this.#mark = mark;
    this.#synced = synced;
  }

  /** A layer was added: sync soon (one sync for the layers of a burst of pulls). */
  request(): void {
    if (this.#closed) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => this.#run(), this.#delayMs);
    this.#timer.unref();
  }

  #run(): void {
    this.#timer = undefined;
    if (this.#closed) return;
    this.#running = true;
    const mark = this.#mark();
    const child = execFile("sync", ["-f", this.#dir], (error) => {
      this.#running = false;
      // A failed sync marks nothing: those layers stay unsynced, and the next sync covers them.
      if (error === null && !this.#closed) this.#synced(mark);
      if (this.#again) {
        this.#again = false;
        this.request();
      }
    });
    child.unref();
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }
}
