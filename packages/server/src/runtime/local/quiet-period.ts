/**
 * Background work put off until the runtime is quiet: a warm pool's refill (a disk, a mount,
 * the launch chain and an agent's start, ~60 ms of work across processes on a quiet machine)
 * competes for the CPU with whatever the sandbox just handed out is asked to do first — on two
 * cores its first exec took 3–4× as long. So a refill waits until no sandbox has been asked for
 * anything (a create, a request to an agent) for `quietMs`, and at the latest `maxMs` after it
 * was asked for: a busy runtime still refills its pools.
 */

export interface QuietPeriodOptions {
  /** How long nothing must have happened. */
  readonly quietMs: number;
  /** The longest a piece of work waits. */
  readonly maxMs: number;
  /** The clock (milliseconds); tests give their own. */
  readonly now?: () => number;
}

export class QuietPeriod {
  readonly #quietMs: number;
  readonly #maxMs: number;
  readonly #now: () => number;
  /** Work waiting, by key (asking again for the same key keeps one turn), with when it may run at the earliest and must at the latest. */
  readonly #waiting = new Map<string, { run: () => void; earliest: number; latest: number }>();
  #lastActivity = Number.NEGATIVE_INFINITY;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = 0;
  #closed = false;

  constructor(options: QuietPeriodOptions) {
    this.#quietMs = options.quietMs;
    this.#maxMs = options.maxMs;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Something happened: what is waiting waits on (up to its latest). Cheap: called per agent request. */
  touch(): void {
    this.#lastActivity = this.#now();
  }

  /**
   * Runs `run` once nothing has happened for `quietMs` since it was asked for, or `maxMs` after
   * it was; a key already waiting keeps its turn (with this `run`).
   */
  defer(key: string, run: () => void): void {
    if (this.#closed) return;
    const entry = this.#waiting.get(key);
    if (entry) entry.run = run;
    else {
      const now = this.#now();
      this.#waiting.set(key, { run, earliest: now + this.#quietMs, latest: now + this.#maxMs });
    }
    this.#arm();
  }

  /** Drops what is waiting; nothing more runs. */
  close(): void {
    this.#closed = true;
    this.#waiting.clear();
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** When a piece of work is due, as things stand. */
  #dueAt(entry: { earliest: number; latest: number }): number {
    return Math.min(entry.latest, Math.max(entry.earliest, this.#lastActivity + this.#quietMs));
  }

  /** The timer for the next moment anything may be due. */
  #arm(): void {
    if (this.#waiting.size === 0) return;
    let at = Number.POSITIVE_INFINITY;
    for (const entry of this.#waiting.values()) at = Math.min(at, this.#dueAt(entry));
    if (this.#timer && this.#timerAt <= at) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, at - this.#now()));
    this.#timer.unref?.();
  }

  #fire(): void {
    this.#timer = undefined;
    const now = this.#now();
    for (const [key, entry] of this.#waiting) {
      if (this.#dueAt(entry) > now) continue;
      this.#waiting.delete(key);
      try {
        entry.run();
      } catch {
        // (A refill reports its own failures; one throwing here must not end the server.)
      }
    }
    this.#arm();
  }
}
