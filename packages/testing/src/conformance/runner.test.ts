import { describe, expect, it } from "vitest";
import { listCases, runConformance } from "./runner.js";
import type { TestApi } from "./target.js";

describe("runConformance (the standalone runner for browsers, Deno and Bun)", () => {
  it("runs cases in order with hooks, and reports failures, timeouts and hook failures per case", async () => {
    const order: string[] = [];
    const seen: string[] = [];
    const results = await runConformance(
      (t) => {
        t.describe("outer", () => {
          t.beforeAll(() => {
            order.push("before");
          });
          t.afterAll(() => {
            order.push("after");
          });
          t.it("passes", async () => {
            order.push("passes");
          });
          t.it("fails", () => {
            throw new Error("boom");
          });
          t.it("times out", () => new Promise(() => {}), 20);
          t.describe("broken setup", () => {
            t.beforeAll(() => {
              throw new Error("no setup");
            });
            t.it("never runs", () => {
              order.push("never");
            });
          });
        });
      },
      { onResult: (r) => seen.push(r.name) },
    );
    expect(order).toEqual(["before", "passes", "after"]);
    expect(results.map((r) => [r.name, r.ok])).toEqual([
      ["outer > passes", true],
      ["outer > fails", false],
      ["outer > times out", false],
      ["outer > broken setup > never runs", false],
    ]);
    expect(results[1]?.error).toContain("boom");
    expect(results[2]?.error).toContain("timed out after 20 ms");
    expect(results[3]?.error).toContain("beforeAll failed: Error: no setup");
    expect(seen).toEqual(results.map((r) => r.name));
  });

  it("runs only the cases the filter matches, and skips hooks of suites with none", async () => {
    const hooks: string[] = [];
    const register = (t: TestApi) => {
      t.describe("a", () => {
        t.beforeAll(() => {
          hooks.push("a");
        });
        t.it("one", () => {});
      });
      t.describe("b", () => {
        t.beforeAll(() => {
          hooks.push("b");
        });
        t.it("two", () => {});
      });
    };
    const results = await runConformance(register, { filter: /two/ });
    expect(results.map((r) => r.name)).toEqual(["b > two"]);
    expect(listCases(register)).toEqual(["a > one", "b > two"]);
    expect(listCases(register, /one/)).toEqual(["a > one"]);
    expect(hooks).toEqual(["b"]);
  });
});
