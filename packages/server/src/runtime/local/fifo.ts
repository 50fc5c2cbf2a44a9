/** Named pipes: how the server and a sandbox's agent exchange control messages and stdio. */
import { execFile } from "node:child_process";
import { constants, openSync } from "node:fs";
import { chown, mkdir, rename } from "node:fs/promises";
import { Socket } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Creates FIFOs (Node has no mkfifo), owned by uid:gid, mode 0600. */
export async function makeFifos(paths: readonly string[], uid: number, gid: number): Promise<void> {
  await run("mkfifo", ["-m", "600", ...paths]);
  await Promise.all(paths.map((p) => chown(p, uid, gid)));
}

/** A non-blocking read end as a stream (opening never blocks, even before a writer exists). */
export function openFifoReader(path: string): Socket {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  return new Socket({ fd, readable: true, writable: false });
}

/**
 * A write end as a stream. Opened read-write so the open never blocks and never fails for
 * want of a reader; the peer sees end-of-file when this end is closed.
 */
export function openFifoWriter(path: string, highWaterMark?: number): Socket {
  const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
  return new Socket({
    fd,
    readable: false,
    writable: true,
    ...(highWaterMark ? { writableHighWaterMark: highWaterMark } : {}),
  });
}

/**
 * Ready-made stdio FIFO triples (stdin, stdout, stderr), so starting a process costs a
 * rename instead of spawning mkfifo: the pool is refilled in the background, many at once.
 */
export class FifoPool {
  readonly #dir: string;
  readonly #uid: number;
  readonly #gid: number;
  readonly #ready: string[] = [];
  #refill: Promise<void> | undefined;
  #next = 0;

  constructor(dir: string, uid: number, gid: number) {
    this.#dir = dir;
    this.#uid = uid;
    this.#gid = gid;
  }

  /** Creates the pool along with any extra FIFOs the caller needs, in one mkfifo call. */
  async fill(extra: readonly string[] = [], count = 4): Promise<void> {
    await mkdir(this.#dir, { recursive: true });
    await chown(this.#dir, this.#uid, this.#gid);
    const dirs = Array.from({ length: count }, () => join(this.#dir, String(this.#next++)));
    await Promise.all(dirs.map((d) => mkdir(d).then(() => chown(d, this.#uid, this.#gid))));
    await makeFifos(
      [...extra, ...dirs.flatMap((d) => ["stdin", "stdout", "stderr"].map((n) => join(d, n)))],
      this.#uid,
      this.#gid,
    );
    this.#ready.push(...dirs);
  }

  /** Moves a ready triple to `target` (a directory path that must not exist yet). */
  async take(target: string): Promise<void> {
    if (this.#ready.length === 0) await this.#startRefill();
    const dir = this.#ready.shift();
    if (!dir) return this.take(target);
    await rename(dir, target);
    if (this.#ready.length < 2) this.#startRefill().catch(() => {});
  }

  /** One refill at a time; callers share the one in flight. */
  #startRefill(): Promise<void> {
    if (!this.#refill) {
      this.#refill = this.fill([], 8).finally(() => {
        this.#refill = undefined;
      });
    }
    return this.#refill;
  }
}
