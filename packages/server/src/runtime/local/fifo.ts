/** Named pipes: how the server and a sandbox's agent exchange control messages and stdio. */
import { execFile } from "node:child_process";
import { constants, openSync } from "node:fs";
import { chown } from "node:fs/promises";
import { Socket } from "node:net";
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
export function openFifoWriter(path: string): Socket {
  const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
  return new Socket({ fd, readable: false, writable: true });
}
