/** Named pipes: how the server and a sandbox's agent exchange control messages and stdio. */
import { execFile } from "node:child_process";
import { closeSync, constants, fstatSync, openSync } from "node:fs";
import { chmod, chown, mkdir, rename, rmdir, unlink } from "node:fs/promises";
import { Socket, type SocketConstructorOpts } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Creates FIFOs (Node has no mkfifo), owned by uid:gid, mode 0600. */
export async function makeFifos(paths: readonly string[], uid: number, gid: number): Promise<void> {
  await run("mkfifo", ["-m", "600", ...paths]);
  await Promise.all(paths.map((p) => chown(p, uid, gid)));
}

/**
 * Opens a FIFO the server made, refusing anything else: never through a symlink (O_NOFOLLOW),
 * never a file or device that sandboxed code put in its place.
 */
function openFifo(path: string, flags: number): number {
  const fd = openSync(path, flags | constants.O_NONBLOCK | constants.O_NOFOLLOW | constants.O_NOCTTY);
  if (!fstatSync(fd).isFIFO()) {
    closeSync(fd);
    throw new Error(`${path} is not a FIFO`);
  }
  return fd;
}

/**
 * A non-blocking read end as a stream (opening never blocks, even before a writer exists).
 * Its buffer holds one read: pause() then stops reading the pipe after at most one more read
 * (with the default 64 KiB a paused stream keeps reading until that much is buffered, so
 * pausing would not stop a trickling writer from waking the server; see read-pacing.ts).
 */
export function openFifoReader(path: string): Socket {
  // Socket passes its options on to Duplex, which reads readableHighWaterMark; Node's types
  // for the constructor do not list it.
  const options: SocketConstructorOpts & { readableHighWaterMark: number } = {
    fd: openFifo(path, constants.O_RDONLY),
    readable: true,
    writable: false,
    readableHighWaterMark: 1,
  };
  return new Socket(options);
}

/**
 * A write end as a stream. Opened read-write so the open never blocks and never fails for
 * want of a reader; the peer sees end-of-file when this end is closed.
 */
export function openFifoWriter(path: string, highWaterMark?: number): Socket {
  const fd = openFifo(path, constants.O_RDWR);
  return new Socket({
    fd,
    readable: false,
    writable: true,
    ...(highWaterMark ? { writableHighWaterMark: highWaterMark } : {}),
  });
}

const CHANNEL_ENTRIES = ["stdin", "stdout", "stderr"] as const;

/**
 * Removes a stdio channel dir made by `FifoPool.take`: its three known FIFO names, then the
 * (then empty) dir. Never a recursive removal: nothing but these names may ever be deleted here.
 * Safe while the sandbox runs only because the dir is root's (see `FifoPool.fill`).
 */
export async function removeChannel(dir: string): Promise<void> {
  const ignoreMissing = (error: NodeJS.ErrnoException) => {
    if (error.code !== "ENOENT") throw error;
  };
  await Promise.all(CHANNEL_ENTRIES.map((name) => unlink(join(dir, name)).catch(ignoreMissing)));
  await rmdir(dir).catch(ignoreMissing);
}

/** The server's ends of a process's stdio FIFOs. */
export interface StdioEnds {
  readonly stdin: Socket;
  readonly stdout: Socket;
  readonly stderr: Socket | undefined;
}

/**
 * Ready-made stdio FIFO triples (stdin, stdout, stderr), so starting a process costs a
 * rename instead of spawning mkfifo: the pool is refilled in the background, many at once.
 * The pool lives outside the sandbox's reach (a root-only dir): the server opens its ends
 * there, and only then moves the triple where the sandbox sees it, so nothing sandboxed code
 * does to that place can make the server open something else.
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
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    await chmod(this.#dir, 0o700);
    const dirs = Array.from({ length: count }, () => join(this.#dir, String(this.#next++)));
    // Root's dirs (0711: the sandbox may pass through, never list, add, swap or remove), the
    // sandbox user's FIFOs (0600: the agent opens them). Nothing sandboxed code does can change
    // what is in a channel dir, so the server may remove its known entries by path.
    await Promise.all(dirs.map((d) => mkdir(d, { mode: 0o711 }).then(() => chmod(d, 0o711))));
    await makeFifos([...extra, ...dirs.flatMap((d) => CHANNEL_ENTRIES.map((n) => join(d, n)))], this.#uid, this.#gid);
    this.#ready.push(...dirs);
  }

  /**
   * Opens the server's ends of a ready triple (stderr unless `withStderr` is false), then moves
   * the triple to `target` (a directory path that must not exist yet, with an unguessable name
   * in a directory the sandbox cannot list).
   */
  async take(target: string, withStderr: boolean): Promise<StdioEnds> {
    if (this.#ready.length === 0) await this.#startRefill();
    const dir = this.#ready.shift();
    if (!dir) return this.take(target, withStderr);
    const opened: Socket[] = [];
    try {
      const stdout = openFifoReader(join(dir, "stdout"));
      opened.push(stdout);
      const stderr = withStderr ? openFifoReader(join(dir, "stderr")) : undefined;
      if (stderr) opened.push(stderr);
      const stdin = openFifoWriter(join(dir, "stdin"));
      opened.push(stdin);
      await rename(dir, target);
      return { stdin, stdout, stderr };
    } catch (error) {
      for (const socket of opened) socket.destroy();
      throw error;
    } finally {
      if (this.#ready.length < 2) this.#startRefill().catch(() => {});
    }
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
