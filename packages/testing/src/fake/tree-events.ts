/** The in-memory tree's changes as inotify-like events, and the observers (watches) that hear of them. */
import type { DirNode, Node } from "./fs-nodes.js";

/** An inotify-like change: to entry `name` of `dir`, or (name "") to `dir` itself. */
export interface TreeEvent {
  readonly dir: DirNode;
  readonly name: string;
  readonly kind: "create" | "modify" | "delete" | "moved_from" | "moved_to" | "delete_self" | "move_self";
  /** Pairs a moved_from with its moved_to. */
  readonly cookie: number;
  /** The entry now there (create, moved_to). */
  readonly node?: Node | undefined;
}

/** Who hears of the tree's changes (a watch): each change comes as one batch of events. */
export interface TreeObserver {
  take(events: readonly TreeEvent[]): void;
  /** The tree is closing: no more events. */
  end(): void;
}

/** An event about directory `dir` itself. */
export const selfEvent = (dir: DirNode, kind: TreeEvent["kind"]): TreeEvent => ({ dir, name: "", kind, cookie: 0 });

/** Hands each change to every observer, until it unsubscribes or the tree closes. */
export class TreeEvents {
  readonly #observers = new Set<TreeObserver>();

  subscribe(observer: TreeObserver): void {
    this.#observers.add(observer);
  }

  unsubscribe(observer: TreeObserver): void {
    this.#observers.delete(observer);
  }

  /** Publishes one change, as one batch of events. */
  emit(events: TreeEvent[]): void {
    for (const observer of this.#observers) observer.take(events);
  }

  /** Ends every observer (the sandbox stopped). */
  close(): void {
    for (const observer of this.#observers) observer.end();
    this.#observers.clear();
  }
}
