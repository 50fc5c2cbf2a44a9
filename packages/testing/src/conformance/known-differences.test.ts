import { describe, expect, it } from "vitest";
import { defineConformanceSuite } from "./index.js";
import {
  caseName,
  expectKnownDifferences,
  FAKE_KNOWN_DIFFERENCES,
  KNOWN_DIFFERENCE_MARK,
  SERVER_KNOWN_DIFFERENCES,
} from "./known-differences.js";
import { listCases, runConformance } from "./runner.js";
import type { ConformanceTarget, FakeControls, TestApi } from "./target.js";
import type { TunnelDomainServers } from "./tunnel-domain-target.js";

/** Every case any target can register: a target with every capability. */
function allCaseNames(): string[] {
  const target: ConformanceTarget = {
    name: "all",
    sdk: {} as ConformanceTarget["sdk"],
    makeClient: () => {
      throw new Error("listing only");
    },
    fake: { onExec() {} } as unknown as FakeControls,
    endpoint: () => ({ url: "http://listing.invalid", token: "" }),
    tunnelDomain: {} as TunnelDomainServers,
  };
  const root = "sbx conformance: all > ";
  return listCases((t) => defineConformanceSuite(t, target)).map((name) => name.slice(root.length));
}

describe("known differences", () => {
  it("every entry names a case that exists, and says why", () => {
    const names = new Set(allCaseNames());
    for (const list of [FAKE_KNOWN_DIFFERENCES, SERVER_KNOWN_DIFFERENCES]) {
      for (const [name, reason] of Object.entries(list)) {
        expect(names.has(name), `no case is named ${JSON.stringify(name)}`).toBe(true);
        expect(reason.length, name).toBeGreaterThan(10);
      }
    }
  });

  it("a listed case passes when it fails, and fails loudly when it passes", async () => {
    const register = (t: TestApi) => {
      const wrapped = expectKnownDifferences(
        t,
        { [caseName(["group", "differs"])]: "a reason", [caseName(["group", "fixed"])]: "another reason" },
        "target",
      );
      wrapped.describe("sbx conformance: target", () => {
        wrapped.describe("group", () => {
          wrapped.it("differs", () => {
            throw new Error("still different");
          });
          wrapped.it("fixed", () => {});
          wrapped.it("unlisted", () => {});
        });
      });
    };
    const results = await runConformance(register);
    const root = "sbx conformance: target > group > ";
    expect(results.map((r) => [r.name, r.ok])).toEqual([
      [`${root}differs${KNOWN_DIFFERENCE_MARK}`, true],
      [`${root}fixed${KNOWN_DIFFERENCE_MARK}`, false],
      [`${root}unlisted`, true],
    ]);
    expect(results[1]?.error).toContain('"group > fixed" passes on target but is listed as a known difference');
    expect(results[1]?.error).toContain("remove its entry");
  });
});
