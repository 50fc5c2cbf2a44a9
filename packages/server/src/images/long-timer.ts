/**
 * Timers of any length. Node's setTimeout (and AbortSignal.timeout, built on it) holds a delay
 * in 32 bits: one over 2^31-1 ms (~24.8 days) fires after 1 ms instead, and AbortSignal.timeout
 * throws for one over 2^32-1. These arm a timer of at most {@link MAX_TIMER_MS} and re-arm it
 * until the whole delay has passed. Neither keeps the process alive.
 */

/** The longest delay one Node timer holds. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export interface LongTimer {
  clear(): void;
}

/** Calls `fire` once `ms` have passed (at once for 0 or less); `clear` stops it. */
export function longTimeout(fire: () => void, ms: number): LongTimer {
  const due = Date.now() + ms;
  let timer: NodeJS.Timeout | undefined;
  const arm = (left: number) => {
    timer = setTimeout(
      () => {
        const rest = due - Date.now();
        if (rest > 0) arm(rest);
        else fire();
      },
      Math.max(0, Math.min(left, MAX_TIMER_MS)),
    );
    timer.unref();
  };
  arm(ms);
  return { clear: () => clearTimeout(timer) };
}

/** A signal that aborts with a TimeoutError DOMException (as AbortSignal.timeout's) after `ms`. */
export function deadlineSignal(ms: number): { readonly signal: AbortSignal; clear(): void } {
  const controller = new AbortController();
  const timer = longTimeout(
    () => controller.abort(new DOMException("The operation was aborted due to timeout", "TimeoutError")),
    ms,
  );
  return { signal: controller.signal, clear: () => timer.clear() };
}
