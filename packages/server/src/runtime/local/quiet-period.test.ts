import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { QuietPeriod } from "./quiet-period.js";

describe("QuietPeriod", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  const quietPeriod = () => new QuietPeriod({ quietMs: 100, maxMs: 1000, now: () => Date.now() });

  it("runs deferred work once nothing has happened for quietMs", () => {
    const quiet = quietPeriod();
    const ran: string[] = [];
    quiet.touch();
    quiet.defer("a", () => ran.push("a"));
    vi.advanceTimersByTime(99);
    expect(ran).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(ran).toEqual(["a"]);
    vi.advanceTimersByTime(5000);
    expect(ran).toEqual(["a"]); // once
  });

  it("waits on while there is activity, up to maxMs after it was asked for", () => {
    const quiet = quietPeriod();
    const ran: number[] = [];
    quiet.defer("a", () => ran.push(Date.now()));
    const start = Date.now();
    // Activity every 50 ms: never quiet for 100 ms, so only the deadline lets it run.
    for (let t = 0; t < 1500 && ran.length === 0; t += 50) {
      quiet.touch();
      vi.advanceTimersByTime(50);
    }
    expect(ran).toEqual([start + 1000]);
  });

  it("activity after a quiet stretch pushes the work back from the latest activity", () => {
    const quiet = quietPeriod();
    let ran = 0;
    quiet.defer("a", () => ran++);
    vi.advanceTimersByTime(80);
    quiet.touch();
    vi.advanceTimersByTime(80); // 160 ms since asked, 80 since the activity
    expect(ran).toBe(0);
    vi.advanceTimersByTime(20);
    expect(ran).toBe(1);
  });

  it("keeps one piece of work per key, with the first one's deadline; other keys run on their own", () => {
    const quiet = quietPeriod();
    const ran: string[] = [];
    quiet.defer("pool", () => ran.push("first"));
    vi.advanceTimersByTime(60);
    quiet.defer("pool", () => ran.push("second"));
    quiet.defer("other", () => ran.push("other"));
    vi.advanceTimersByTime(40);
    expect(ran).toEqual(["second"]);
    vi.advanceTimersByTime(60);
    expect(ran).toEqual(["second", "other"]);
  });

  it("runs nothing once closed, and takes no more", () => {
    const quiet = quietPeriod();
    let ran = 0;
    quiet.defer("a", () => ran++);
    quiet.close();
    quiet.defer("b", () => ran++);
    vi.advanceTimersByTime(5000);
    expect(ran).toBe(0);
  });
});
