/** Local files for copyFromLocal / copyToLocal and images.import, streamed with Deno's file API. */
import { InvalidError } from "@sbx/core";
import type { LocalFiles, LocalImageFiles } from "@sbx/core/adapter";
import { type DenoApi, denoGlobal } from "./deno-api.ts";

const deno = (): DenoApi => {
  const api = denoGlobal();
  if (!api) throw new InvalidError("local files need Deno's file API (@sbx/deno runs in Deno)");
  return api;
};

/** Splits a path into its directory and its last part (POSIX and Windows separators). */
function splitPath(path: string): { dir: string; base: string } {
  const cut = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  if (cut < 0) return { dir: ".", base: path };
  return { dir: cut === 0 ? path.slice(0, 1) : path.slice(0, cut), base: path.slice(cut + 1) };
}

export const denoLocalFiles: LocalFiles & Pick<LocalImageFiles, "stat" | "list"> = {
  async *read(path) {
    const file = await deno().open(path, { read: true });
    // The stream closes the file when it ends, fails or is cancelled (on leaving early).
    const reader = file.readable.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        yield value;
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
  },
  /** For `images.import`: what is at `path` (`follow`: through symlinks). */
  async stat(path, follow) {
    const info = await (follow ? deno().stat(path) : deno().lstat(path));
    return { type: info.isFile ? "file" : info.isDirectory ? "directory" : "other", size: info.size };
  },
  async list(path) {
    const names: string[] = [];
    for await (const entry of deno().readDir(path)) names.push(entry.name);
    return names;
  },
  async write(path, chunks) {
    const api = deno();
    const { dir, base } = splitPath(path);
    await api.mkdir(dir, { recursive: true });
    // Written beside the target, then renamed: a reader never sees half a file.
    const temp = `${dir}/.${base}.sbx-${api.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
    try {
      const file = await api.open(temp, { write: true, createNew: true });
      // Closing or aborting the writer closes the file.
      const writer = file.writable.getWriter();
      try {
        for await (const chunk of chunks) await writer.write(chunk);
        await writer.close();
      } catch (error) {
        await writer.abort(error).catch(() => {});
        throw error;
      }
      await api.rename(temp, path);
    } catch (error) {
      await api.remove(temp).catch(() => {});
      throw error;
    }
  },
};
