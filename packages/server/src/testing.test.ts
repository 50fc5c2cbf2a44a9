// @sbx/server/testing: CI never skips silently; elsewhere a missing prerequisite is a warning.
import { afterEach, describe, expect, it, vi } from "vitest";
import { realServerAvailable } from "./testing.js";

describe("realServerAvailable", () => {
  const ci = process.env.CI;
  afterEach(() => {
    if (ci === undefined) delete process.env.CI;
    else process.env.CI = ci;
    vi.restoreAllMocks();
  });

  it("throws in CI when something is missing, naming what and why", async () => {
    process.env.CI = "true";
    await expect(realServerAvailable("the widget tests", ["no widget here"])).rejects.toThrow(
      /the widget tests cannot run here:\n\s+no widget here/,
    );
  });

  it("warns and answers false elsewhere", async () => {
    delete process.env.CI;
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    expect(await realServerAvailable("the widget tests", ["no widget here"])).toBe(false);
    expect(warn.mock.calls[0]?.[0]).toMatch(/skipping: the widget tests cannot run here/);
  });
});
