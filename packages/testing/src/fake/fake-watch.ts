/** A watch on the fake's files: the tree's inotify-like events turned into the Watch RPC's batches. */
import { type RuntimeWatchEvent, WatchQueue } from "@sbx/server-kit";
import type { FakeTree } from "./fake-tree.js";
import { FakeFsError } from "./fs-errors.js";
import { type DirNode, READ } from "./fs-nodes.js";
import { joinPath, uploadTarget } from "./fs-paths.js";
import type { TreeEvent, TreeObserver } from "./tree-events.js";

/**
 * One watch, like the agent's inotify instance: a directory (with `recursive`, every
 * directory below it, new ones included) or one file (watched through its directory, so a
 * file replaced by a rename stays watched). Watched directories are remembered with the path
 * they had when added, as inotify's watch descriptors are, and a directory moved away is no
 * longer watched (moved within the tree, it is added again under its new path), as the agent
 * does. Events are decoded the way the agent decodes them.
 */
export class FakeWatch implements TreeObserver {
  readonly #dirs = new Map<DirNode, string>();
  readonly #queue = new WatchQueue<RuntimeWatchEvent>({ type: "overflow", paths: [] });

  private constructor(
    private readonly tree: FakeTree,
    readonly root: string,
    readonly only: string | undefined,
    readonly recursive: boolean,
  ) {}

  /** Watches a file or a directory (a symlink is followed), as the agent's watch call does. */
  static start(tree: FakeTree, path: string, recursive: boolean): FakeWatch {
    const { dir, name, node } = tree.resolve(path, true);
    if (!node) throw new FakeFsError("ENOENT", path);
    const watchDir = node.type === "directory" ? node : dir;
    const only = node.type === "directory" ? undefined : name;
    const root = tree.pathOf(watchDir) ?? "/";
    if (!(watchDir.mode & READ)) throw new FakeFsError("EACCES", path);
    const watch = new FakeWatch(tree, root, only, recursive);
    watch.#add(root, watchDir);
    if (recursive && only === undefined) watch.#addTree(root, watchDir, []);
    tree.events.subscribe(watch);
    return watch;
  }

  /** Watches one directory (inotify_add_watch needs read permission). */
  #add(path: string, dir: DirNode): boolean {
    if (!(dir.mode & READ)) return false;
    this.#dirs.set(dir, path);
    return true;
  }

  /**
   * Watches every directory below `dir` (top down; a symlink is an entry like a file, neither
   * watched nor entered); names found go to `created`.
   */
  #addTree(path: string, dir: DirNode, created: string[]): void {
    if (!(dir.mode & READ)) return; // what the user cannot list is skipped
    const subdirs: [string, DirNode][] = [];
    const files: string[] = [];
    for (const [name, node] of dir.entries) {
      const child = joinPath(path, name);
      if (node.type === "directory") subdirs.push([child, node]);
      else files.push(child);
    }
    for (const [child, target] of subdirs) {
      created.push(child);
      this.#add(child, target);
    }
    created.push(...files);
    for (const [child, target] of subdirs) this.#addTree(child, target, created);
  }

  /** Stops watching the directory at `path` and every one below it (it was moved away). */
  #forget(path: string): void {
    for (const [dir, at] of this.#dirs) {
      if (at === path || at.startsWith(`${path}/`)) this.#dirs.delete(dir);
    }
  }

  /** Decodes one batch of changes, as the agent decodes one inotify read. */
  take(batch: readonly TreeEvent[]): void {
    if (this.#queue.ended) return;
    const out: RuntimeWatchEvent[] = [];
    const moves = new Map<number, number | null>();
    for (const event of batch) {
      const parent = this.#dirs.get(event.dir);
      if (parent === undefined) continue;
      if (event.name === "") {
        // The watched directory itself.
        if (event.kind === "delete_self" || event.kind === "move_self") {
          if (parent === this.root && this.only === undefined) {
            out.push({ type: event.kind === "delete_self" ? "delete" : "rename", paths: [parent] });
          }
          if (event.kind === "delete_self") this.#dirs.delete(event.dir);
        }
        continue;
      }
      const name = event.name;
      const target = uploadTarget(name);
      if (this.only !== undefined && name !== this.only && target !== this.only) continue;
      const path = joinPath(parent, name);
      if (target !== undefined) {
        // An SDK upload: its temporary file is not news; its rename into place is a create.
        if (event.kind === "moved_from") moves.set(event.cookie, null);
        continue;
      }
      switch (event.kind) {
        case "create":
          out.push({ type: "create", paths: [path] });
          break;
        case "modify": {
          const previous = out.length > 0 ? out[out.length - 1] : this.#queue.lastPending();
          if (!(previous?.type === "modify" && previous.paths.length === 1 && previous.paths[0] === path)) {
            out.push({ type: "modify", paths: [path] });
          }
          break;
        }
        case "delete":
          out.push({ type: "delete", paths: [path] });
          break;
        case "moved_from":
          moves.set(event.cookie, out.length);
          out.push({ type: "rename", paths: [path] });
          if (this.recursive) this.#forget(path);
          break;
        case "moved_to": {
          const index = moves.has(event.cookie) ? moves.get(event.cookie) : -1;
          moves.delete(event.cookie);
          if (index === null) out.push({ type: "create", paths: [path] });
          else if (index !== undefined && index >= 0) (out[index] as RuntimeWatchEvent).paths.push(path);
          else out.push({ type: "rename", paths: [path] });
          break;
        }
      }
      if (
        this.recursive &&
        event.node?.type === "directory" &&
        (event.kind === "create" || event.kind === "moved_to")
      ) {
        const created: string[] = [];
        if (this.#add(path, event.node)) this.#addTree(path, event.node, created);
        for (const p of created) out.push({ type: "create", paths: [p] });
      }
    }
    this.#queue.push(out);
  }

  /** No more events (the sandbox stopped, or the watch was closed). */
  end(): void {
    this.#queue.end();
    this.tree.events.unsubscribe(this);
  }

  /** Batches of events as they come, until the watch ends or `signal` aborts. */
  batches(signal: AbortSignal): AsyncGenerator<RuntimeWatchEvent[]> {
    return this.#queue.drain(signal, () => this.end());
  }
}
