/** Local files for copyFromLocal / copyToLocal and images.import, with Bun's file API. */
import { lstat, mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { LocalFiles, LocalImageFiles } from "@sbx/core/adapter";

export const bunLocalFiles: LocalFiles & Pick<LocalImageFiles, "stat" | "list"> = {
  // Bun opens the file at the first read; a missing file or a directory rejects there with
  // ENOENT / EISDIR, as Node's fs does, before any byte is sent.
  read: (path) => Bun.file(path).stream(),
  /** For `images.import`: what is at `path` (`follow`: through symlinks). */
  async stat(path, follow) {
    const info = await (follow ? stat(path) : lstat(path));
    return { type: info.isFile() ? "file" : info.isDirectory() ? "directory" : "other", size: info.size };
  },
  list: (path) => readdir(path),
  async write(path, chunks) {
    await mkdir(dirname(path), { recursive: true });
    // Written beside the target, then renamed: a reader never sees half a file.
    const temp = join(dirname(path), `.${basename(path)}.sbx-${process.pid}-${crypto.randomUUID()}`);
    const sink = Bun.file(temp).writer({ highWaterMark: 1024 * 1024 });
    let closed = false;
    try {
      for await (const chunk of chunks) {
        // A pending write means the sink's buffer is full: wait, so memory stays flat.
        const written = sink.write(chunk);
        if (typeof written !== "number") await written;
      }
      closed = true;
      await sink.end();
      await rename(temp, path);
    } catch (error) {
      if (!closed) await Promise.resolve(sink.end()).catch(() => {});
      await rm(temp, { force: true });
      throw error;
    }
  },
};
