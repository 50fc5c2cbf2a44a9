/** Local files for copyFromLocal / copyToLocal, streamed with Node's fs. */
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import type { LocalFiles } from "@sbx/core";

export const nodeLocalFiles: LocalFiles = {
  read: (path) => createReadStream(path, { highWaterMark: 1024 * 1024 }),
  async write(path, chunks) {
    await mkdir(dirname(path), { recursive: true });
    // Written beside the target, then renamed: a reader never sees half a file.
    const temp = join(dirname(path), `.${basename(path)}.sbx-${process.pid}-${Date.now()}`);
    try {
      // A deep buffer lets the disk write overlap the next piece arriving.
      await pipeline(chunks, createWriteStream(temp, { highWaterMark: 8 * 1024 * 1024 }));
      await rename(temp, path);
    } catch (error) {
      await rm(temp, { force: true });
      throw error;
    }
  },
};
