/** File metadata and watch events as the wire has them, from what a server's filesystem reports. */
import { FileType, WatchEventType } from "@sbx/proto";
import type { RuntimeFileInfo, RuntimeWatchEvent } from "../runtime-driver.js";

const FILE_TYPES = {
  file: FileType.FILE,
  directory: FileType.DIRECTORY,
  symlink: FileType.SYMLINK,
  other: FileType.OTHER,
} as const;

const WATCH_TYPES = {
  create: WatchEventType.CREATE,
  modify: WatchEventType.MODIFY,
  delete: WatchEventType.DELETE,
  rename: WatchEventType.RENAME,
  overflow: WatchEventType.OVERFLOW,
} as const;

export const fileInfoToWire = (info: RuntimeFileInfo) => ({
  name: info.name,
  path: info.path,
  type: FILE_TYPES[info.type],
  size: BigInt(info.size),
  mode: info.mode,
  mtimeMs: BigInt(Math.trunc(info.mtimeMs)),
  symlinkTarget: info.symlinkTarget ?? "",
});

/** A batch of events on the wire, keeping the types in `filter` (all when empty; overflow always). */
export function watchEventsToWire(batch: readonly RuntimeWatchEvent[], filter: readonly WatchEventType[]) {
  const wanted = new Set(filter);
  return batch
    .map((e) => ({ type: WATCH_TYPES[e.type], paths: [...e.paths] }))
    .filter((e) => wanted.size === 0 || wanted.has(e.type) || e.type === WatchEventType.OVERFLOW);
}
