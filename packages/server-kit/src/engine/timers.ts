/** Timers that never keep a process alive (Node, Deno, Bun) and work where `unref` is absent (browsers). */
export type Timer = ReturnType<typeof setTimeout>;

export function unrefTimer(callback: () => void, ms: number): Timer {
  const timer = setTimeout(callback, ms);
  (timer as { unref?: () => void }).unref?.();
  return timer;
}
