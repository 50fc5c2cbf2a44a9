/**
 * Room for the server's own writes on a sandbox's tmpfs mounts. The server writes an upload
 * itself (agent-files.ts), and a page it writes into a tmpfs (/tmp, or bubblewrap's /dev) is
 * charged to the server's memory cgroup, not the sandbox's; those mounts are as large as half
 * the host's memory. Unbounded, uploads alone could fill the host. So the server writes into a
 * sandbox's tmpfs only while that tmpfs holds less than the sandbox's memory limit (as much as
 * its own processes could put there), and a write past it fails with ENOSPC, as on a full disk.
 */
import { statfs } from "node:fs/promises";

/** statfs type of tmpfs. */
const TMPFS = 0x01021994;

const noSpace = () =>
  Object.assign(new Error("no space left on the sandbox's tmpfs (it may hold as much as its memory limit)"), {
    code: "ENOSPC",
  });

export class TmpfsRoom {
  /** Bytes the server is writing into the sandbox's tmpfs mounts now (not yet in their counts). */
  #writing = 0;

  /** `limitBytes`: the sandbox's memory limit now. */
  constructor(readonly limitBytes: () => number) {}

  /**
   * Room for `bytes` more in the file the server opened as `fd`: resolves with the release to
   * call once they are written, or rejects with ENOSPC. Files elsewhere than on tmpfs always
   * have room here (the sandbox's disk is bounded by its size).
   */
  async claim(fd: number, bytes: number): Promise<() => void> {
    const fs = await statfs(`/proc/self/fd/${fd}`);
    if (fs.type !== TMPFS) return () => {};
    // A tmpfs without a size (blocks 0) does not say what it holds: never written.
    const used = (fs.blocks - fs.bfree) * fs.bsize;
    if (fs.blocks === 0 || used + this.#writing + bytes > this.limitBytes()) throw noSpace();
    this.#writing += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#writing -= bytes;
    };
  }
}
