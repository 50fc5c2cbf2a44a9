/**
 * Where a target is known to differ from the contract, said in one place (as connect-es keeps a
 * `known-failing` list per runtime for the Connect conformance runner).
 *
 * Every case has a stable name: its path inside the suite, without the target's name, e.g.
 * `"exec > a SIGWINCH does not end a running process"` (describe names and the case name,
 * joined with " > "). A target lists the names it is known to fail, each with the reason:
 *
 * ```ts
 * defineConformanceSuite(t, { name: "node → fake", sdk, makeClient, knownDifferences: FAKE_KNOWN_DIFFERENCES });
 * ```
 *
 * A listed case still runs, and is expected to fail: it passes when it fails, and fails loudly
 * when it passes (the difference is gone: remove its entry). `knownDifferences.test.ts` checks
 * that every entry names a case that exists. Cases never branch on the target to paper over
 * a difference; only capabilities gate cases (the fake's fault controls, an endpoint to speak
 * HTTP to), and a gated case is one the target cannot run at all, not one it gets wrong.
 */
import type { KnownDifferences, TestApi } from "./target.js";

export type { KnownDifferences } from "./target.js";

/**
 * The fake server's (`@sbx/testing`'s `createFakeServer`) differences from the real server.
 * None: it runs the server's own engine over an in-memory runtime driver.
 */
export const FAKE_KNOWN_DIFFERENCES: KnownDifferences = {};

/**
 * The real server's differences from the contract: nothing reaches into its sandboxes yet
 * (issue #18's tunnels are being built), so exposed ports are refused with `UnsupportedError`.
 */
export const SERVER_KNOWN_DIFFERENCES: KnownDifferences = {};

export const KNOWN_DIFFERENCE_MARK = " [known difference]";

/**
 * Wraps `t` so that a case listed in `known` is expected to fail: it passes when it fails, and
 * fails, saying to remove the entry, when it passes. Listed cases get KNOWN_DIFFERENCE_MARK
 * appended to their name so a report says what their "pass" means; `root` (the suite's top
 * describe) is left out of the stable names.
 */
export function expectKnownDifferences(t: TestApi, known: KnownDifferences, targetName: string): TestApi {
  if (Object.keys(known).length === 0) return t;
  // The describe path of the factory running now. Runners may call a describe's factory later
  // than the describe itself (vitest does), so each factory sets the path it captured.
  let current: readonly string[] = [];
  return {
    ...t,
    describe(name, fn) {
      const mine = [...current, name];
      t.describe(name, () => {
        const outer = current;
        current = mine;
        try {
          fn();
        } finally {
          current = outer;
        }
      });
    },
    it(name, fn, timeoutMs) {
      const stable = caseName([...current.slice(1), name]);
      const reason = known[stable];
      if (reason === undefined) return t.it(name, fn, timeoutMs);
      t.it(
        `${name}${KNOWN_DIFFERENCE_MARK}`,
        async () => {
          try {
            await fn();
          } catch {
            return; // the known difference, still there
          }
          throw new Error(
            `"${stable}" passes on ${targetName} but is listed as a known difference (${reason}): ` +
              "the difference is gone, remove its entry from the target's known differences " +
              "(packages/testing/src/conformance/known-differences.ts)",
          );
        },
        timeoutMs,
      );
    },
  };
}

/** A case's stable name from its describe names (below the suite's own) and its name. */
export const caseName = (parts: readonly string[]): string => parts.join(" > ");
