/**
 * The Node side of a cross-runtime conformance run: starts a real sbx server (local runtime)
 * and the fake on a port, lets the test start the runtime (which runs the suite and prints a
 * result line per case), and turns every case into one vitest test, so a failure in Deno shows
 * up as that case failing, by name.
 */
import * as core from "@sbx/core";
import { startTestServer } from "@sbx/server/testing";
import { createFakeServer } from "@sbx/testing";
import { type CaseResult, defineConformanceSuite, listCases } from "@sbx/testing/conformance";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RESULT_PREFIX } from "./remote-suite.js";
import { knownDifferencesOf, type RemoteTarget, targetName } from "./targets.js";

export { realServerAvailable } from "@sbx/server/testing";

/** A real server and the fake on ports, for the enclosing describe. Read them inside hooks and tests. */
export function useTargets(): { readonly targets: readonly RemoteTarget[] } {
  let real: Awaited<ReturnType<typeof startTestServer>> | undefined;
  let fake: { server: ReturnType<typeof createFakeServer>; url: string; close: () => Promise<void> } | undefined;
  beforeAll(async () => {
    real = await startTestServer({ token: "runtime-token" });
    const server = createFakeServer({ token: "fake-token" });
    fake = { server, ...(await server.listen()) };
  });
  afterAll(async () => {
    await real?.close();
    real?.removeData();
    await fake?.close();
    await fake?.server.close();
  });
  return {
    get targets(): readonly RemoteTarget[] {
      if (!real || !fake) throw new Error("targets are not running (use them inside hooks and tests)");
      return [
        { kind: "real server", url: real.url, token: real.token },
        { kind: "fake", url: fake.url, token: "fake-token" },
      ];
    },
  };
}

/** Result lines (see RESULT_PREFIX) out of a runtime's output. */
export function parseResults(output: string): CaseResult[] {
  return output
    .split("\n")
    .filter((line) => line.startsWith(RESULT_PREFIX))
    .map((line) => JSON.parse(line.slice(RESULT_PREFIX.length)) as CaseResult);
}

/**
 * Declares one vitest test per conformance case for `runtime` against both targets; `run`
 * (called once, in beforeAll) starts the runtime and returns what it reported.
 */
export function declareRuntimeConformance(
  runtime: string,
  run: (targets: readonly RemoteTarget[]) => Promise<CaseResult[]>,
  filter?: RegExp,
): void {
  const targets = useTargets();
  let results = new Map<string, CaseResult>();
  let extra: CaseResult[] = [];
  beforeAll(async () => {
    const reported = await run(targets.targets);
    results = new Map(reported.map((r) => [r.name, r]));
    extra = reported.filter((r) => !names.includes(r.name));
  });
  const names = listCases((t) => {
    for (const kind of ["real server", "fake"] as const) {
      defineConformanceSuite(t, {
        name: targetName(runtime, { kind }),
        sdk: core,
        makeClient: () => {
          throw new Error("listing only");
        },
        knownDifferences: knownDifferencesOf({ kind }),
      });
    }
  }, filter);
  describe(`conformance in ${runtime}`, () => {
    for (const name of names) {
      it(name, () => {
        const result = results.get(name);
        if (!result) throw new Error(`${runtime} reported no result for this case`);
        if (!result.ok) throw new Error(`failed in ${runtime}:\n${result.error}`);
      });
    }
    it("reports nothing beyond the cases (no failing afterAll hooks)", () => {
      expect(extra.map((r) => `${r.name}: ${r.error}`)).toEqual([]);
    });
  });
}
