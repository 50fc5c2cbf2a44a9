/**
 * Sandboxes started ahead of demand, so a create costs a cgroup rename and a few limit writes
 * instead of mount + bwrap + agent start.
 */

/** What the pool needs of a sandbox. */
export interface WarmSandbox {
  /** Settles when the sandbox has ended (it then leaves the pool). */
  readonly died: Promise<void>;
  destroy(): Promise<void>;
}

export interface WarmPoolOptions<S extends WarmSandbox> {
  /** Sandboxes kept started (0 disables). */
  readonly size: number;
  /** Starts a sandbox with this id; the pool owns it once it has started. */
  readonly start: (id: string) => Promise<S>;
}

export class WarmPool<S extends WarmSandbox> {
  readonly #size: number;
  readonly #start: (id: string) => Promise<S>;
  readonly #warm: S[] = [];
  #warming = 0;
  /** Warm starts in flight; close() waits for them (they destroy themselves once closed). */
  readonly #warmStarts = new Set<Promise<unknown>>();
  #closed = false;

  constructor(options: WarmPoolOptions<S>) {
    this.#size = options.size;
    this.#start = options.start;
  }

  /** How many are started and waiting. */
  get ready(): number {
    return this.#warm.length;
  }

  /** A started sandbox, if one is ready; the caller refills the pool. */
  take(): S | undefined {
    return this.#warm.shift();
  }

  /** Starts sandboxes until `size` are started or starting. */
  refill(): void {
    while (!this.#closed && this.#warm.length + this.#warming < this.#size) {
      this.#warming++;
      const id = `warm-${Math.random().toString(36).slice(2, 12)}`;
      const starting = this.#start(id)
        .then((sandbox) => {
          if (this.#closed) return sandbox.destroy();
          this.#warm.push(sandbox);
          sandbox.died.then(() => {
            const at = this.#warm.indexOf(sandbox);
            if (at !== -1) this.#warm.splice(at, 1);
          });
        })
        .catch(() => {})
        .finally(() => {
          this.#warming--;
          this.#warmStarts.delete(starting);
        });
      this.#warmStarts.add(starting);
    }
  }

  /** Starts no more; once the starts in flight have settled, hands back the started sandboxes. */
  async close(): Promise<S[]> {
    this.#closed = true;
    await Promise.allSettled([...this.#warmStarts]);
    return this.#warm.splice(0);
  }
}
