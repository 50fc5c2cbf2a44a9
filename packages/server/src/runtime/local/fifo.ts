/**
 * Pipes as streams, and the named pipes (FIFOs) through which the server and a sandbox's agent
 * exchange control messages.
 */
import { execFile } from "node:child_process";
import { closeSync, constants, fstatSync, openSync } from "node:fs";
import { chown } from "node:fs/promises";
import { Socket, type SocketConstructorOpts } from "node:net";
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
 * A non-blocking read end of a pipe or FIFO as a stream. Its buffer holds one read: pause()
 * then stops reading the pipe after at most one more read (with the default 64 KiB a paused
 * stream keeps reading until that much is buffered, so pausing would not stop a trickling
 * writer from waking the server; see read-pacing.ts).
 */
export function pipeReader(fd: number): Socket {
  // Socket passes its options on to Duplex, which reads readableHighWaterMark; Node's types
  // for the constructor do not list it.
  const options: SocketConstructorOpts & { readableHighWaterMark: number } = {
    fd,
    readable: true,
    writable: false,
    readableHighWaterMark: 1,
  };
  return new Socket(options);
}

/** A non-blocking write end of a pipe or FIFO as a stream. */
export function pipeWriter(fd: number): Socket {
  return new Socket({ fd, readable: false, writable: true });
}

/** A FIFO's read end (opening never blocks, even before a writer exists). */
export function openFifoReader(path: string): Socket {
  return pipeReader(openFifo(path, constants.O_RDONLY));
}

/**
 * A FIFO's write end. Opened read-write so the open never blocks and never fails for want of
 * a reader; the peer sees end-of-file when this end is closed.
 */
export function openFifoWriter(path: string): Socket {
  return pipeWriter(openFifo(path, constants.O_RDWR));
}
