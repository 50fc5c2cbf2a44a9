import { describe, expect, it } from "vitest";
import { HostedBudget } from "./hosted-budget.js";

describe("the hosted requests' budget", () => {
  it("stays below the cap on connections, whatever it is asked for", () => {
    expect(new HostedBudget({}, 10_000).maxRequests).toBe(5000);
    expect(new HostedBudget({ maxRequests: 50_000 }, 100).maxRequests).toBe(99);
    expect(new HostedBudget({}, 1).maxRequests).toBe(0);
    const small = new HostedBudget({}, 20);
    expect([small.maxRequests, small.maxPerAddress, small.maxPerTarget]).toEqual([10, 10, 10]);
    expect(() => new HostedBudget({ maxRequestsPerAddress: -1 }, 20)).toThrow(RangeError);
  });

  it("counts in flight by address and by target; a place given back twice is given back once", () => {
    const budget = new HostedBudget({ maxRequests: 4, maxRequestsPerAddress: 2, maxRequestsPerTarget: 3 }, 100);
    const a1 = budget.take("10.0.0.1", "sb-a:80");
    expect(a1).toBeDefined();
    expect(budget.take("10.0.0.1", "sb-b:80")).toBeDefined();
    expect(budget.take("10.0.0.1", "sb-c:80")).toBeUndefined(); // the address's cap
    expect(budget.take("10.0.0.2", "sb-a:80")).toBeDefined();
    expect(budget.take("10.0.0.3", "sb-a:80")).toBeDefined();
    expect(budget.take("10.0.0.4", "sb-a:80")).toBeUndefined(); // the target's cap (and the total)
    expect(budget.inFlight).toBe(4);
    a1?.();
    a1?.();
    expect(budget.inFlight).toBe(3);
    expect(budget.take("10.0.0.1", "sb-c:80")).toBeDefined();
    expect(budget.take("10.0.0.5", "sb-d:80")).toBeUndefined(); // the total
  });
});
