/**
 * A command's lifecycle, shared by the real server and the fake: who is attached to it,
 * when a running command nobody watches is killed (idle timeout, kill-on-disconnect), and
 * when a finished command's record and output are forgotten (TTL).
 *
 * "Attached" means a client is reading the command's output or waiting on it. The policy
 * only decides *when*; the owner supplies `kill` and `expire`.
 */

/** How long kill-on-disconnect waits for a reader to come back (a dropped connection resuming). */
export const DISCONNECT_GRACE_MS = 1_000;

/** The longest delay one setTimeout holds (2^31 - 1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface CommandLifecycleOptions {
  /** Kill the running command after this long with no client attached. undefined: never. */
  readonly idleTimeoutMs?: number | undefined;
  /** Kill the running command when its last client leaves (after `graceMs`). */
  readonly killOnDisconnect?: boolean | undefined;
  /** Forget the finished command this long after it ended. undefined: never. */
  readonly ttlMs?: number | undefined;
  readonly graceMs?: number | undefined;
  /** Kills the running command (it then ends, and `ended()` is called). */
  readonly kill: (reason: "idle" | "disconnect") => void;
  /** Forgets the finished command: its record and output are gone. */
  readonly expire: () => void;
}

export class CommandLifecycle {
  readonly #options: CommandLifecycleOptions;
  #attached = 0;
  #running = true;
  #expired = false;
  #ttlDue = false;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #graceTimer: ReturnType<typeof setTimeout> | undefined;
  #ttlTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: CommandLifecycleOptions) {
    this.#options = options;
    this.#armIdle();
  }

  get attached(): number {
    return this.#attached;
  }

  get expired(): boolean {
    return this.#expired;
  }

  /**
   * A client attached (a read or a wait began). Call the returned function when it leaves;
   * with `signal`, aborting it (the client cancelled or disconnected) also counts as leaving —
   * a streaming handler parked at a `yield` is not always resumed to run its `finally`.
   */
  attach(signal?: AbortSignal): () => void {
    this.#attached++;
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#graceTimer);
    this.#idleTimer = this.#graceTimer = undefined;
    let left = false;
    const leave = () => {
      if (left) return;
      left = true;
      signal?.removeEventListener("abort", leave);
      this.#attached--;
      if (this.#attached > 0) return;
      if (this.#running) {
        this.#armIdle();
        if (this.#options.killOnDisconnect) {
          this.#graceTimer = unref(
            setTimeout(() => {
              if (this.#running && this.#attached === 0) this.#options.kill("disconnect");
            }, this.#options.graceMs ?? DISCONNECT_GRACE_MS),
          );
        }
      } else if (this.#ttlDue) {
        this.#expire();
      }
    };
    if (signal?.aborted) leave();
    else signal?.addEventListener("abort", leave, { once: true });
    return leave;
  }

  /** The command finished: idle and disconnect policies stop; the TTL starts. */
  ended(): void {
    if (!this.#running) return;
    this.#running = false;
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#graceTimer);
    const ttl = this.#options.ttlMs;
    if (ttl !== undefined) this.#armTtl(ttl);
  }

  /** One timer holds at most ~24.8 days (a longer delay fires at once): longer TTLs re-arm. */
  #armTtl(remainingMs: number): void {
    const step = Math.min(remainingMs, MAX_TIMER_MS);
    this.#ttlTimer = unref(
      setTimeout(() => {
        if (remainingMs > step) return this.#armTtl(remainingMs - step);
        // Readers still draining the output keep it until they leave.
        this.#ttlDue = true;
        if (this.#attached === 0) this.#expire();
      }, step),
    );
  }

  /** Stops every timer (the sandbox or the server is going away). */
  dispose(): void {
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#graceTimer);
    clearTimeout(this.#ttlTimer);
  }

  #armIdle(): void {
    const idle = this.#options.idleTimeoutMs;
    if (idle === undefined || !this.#running || this.#attached > 0) return;
    clearTimeout(this.#idleTimer);
    this.#idleTimer = unref(
      setTimeout(() => {
        if (this.#running && this.#attached === 0) this.#options.kill("idle");
      }, idle),
    );
  }

  #expire(): void {
    if (this.#expired) return;
    this.#expired = true;
    this.dispose();
    this.#options.expire();
  }
}

function unref<T>(timer: T): T {
  (timer as { unref?: () => void }).unref?.();
  return timer;
}
