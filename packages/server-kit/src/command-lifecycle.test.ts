import { afterEach, describe, expect, it, vi } from "vitest";
import { CommandLifecycle } from "./command-lifecycle.js";

const DAY_MS = 86_400_000;

describe("CommandLifecycle TTL", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("a TTL longer than one timer can hold (30 days) forgets the output after 30 days, not at once", () => {
    vi.useFakeTimers();
    const expire = vi.fn();
    const lifecycle = new CommandLifecycle({ ttlMs: 30 * DAY_MS, kill: () => {}, expire });
    lifecycle.ended();
    vi.advanceTimersByTime(1_000);
    expect(expire).not.toHaveBeenCalled();
    vi.advanceTimersByTime(29 * DAY_MS);
    expect(expire).not.toHaveBeenCalled();
    vi.advanceTimersByTime(DAY_MS);
    expect(expire).toHaveBeenCalledTimes(1);
  });

  it("a short TTL still expires on time", () => {
    vi.useFakeTimers();
    const expire = vi.fn();
    const lifecycle = new CommandLifecycle({ ttlMs: 500, kill: () => {}, expire });
    lifecycle.ended();
    vi.advanceTimersByTime(499);
    expect(expire).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(expire).toHaveBeenCalledTimes(1);
  });
});
