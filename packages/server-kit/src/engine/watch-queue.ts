/**
 * Watch events between whoever produces them (a sandbox's agent, the fake's tree) and one
 * reader: batches as they come, bounded — a reader too slow to keep up gets one "overflow"
 * event in place of what it missed.
 */
import type { RuntimeWatchEvent } from "./runtime-driver.js";

/** Events waiting for a slow reader beyond this many are dropped for one "overflow" event. */
export const MAX_PENDING_WATCH_EVENTS = 10_000;

export class WatchQueue<E extends RuntimeWatchEvent> {
  #pending: E[] = [];
  #ended = false;
  #wake: (() => void) | undefined;

  constructor(private readonly overflow: E) {}

  push(batch: readonly E[]): void {
    if (batch.length === 0) return;
    if (this.#pending.length + batch.length > MAX_PENDING_WATCH_EVENTS) this.#pending = [this.overflow];
    else this.#pending.push(...batch);
    this.#notify();
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** The newest event not yet read (to coalesce a repeat with it). */
  lastPending(): E | undefined {
    return this.#pending[this.#pending.length - 1];
  }

  /** No more events will come. */
  end(): void {
    this.#ended = true;
    this.#notify();
  }

  #notify() {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Batches as they come, until `end()` or `signal` aborts; `stop` runs when reading stops. */
  async *drain(signal: AbortSignal, stop: () => void): AsyncGenerator<E[]> {
    const onAbort = () => this.end();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      while (!signal.aborted) {
        if (this.#pending.length > 0) {
          const batch = this.#pending;
          this.#pending = [];
          yield batch;
        } else if (this.#ended) return;
        else await new Promise<void>((resolve) => (this.#wake = resolve));
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      stop();
    }
  }
}
