/**
 * The runtime side of a cross-runtime conformance run: given the adapter module under test
 * (`@sbx/web`, `@sbx/deno`, `@sbx/bun`) and where the targets listen, runs the conformance
 * suite against each and reports every result. Imported by each runtime's entry script; it
 * must stay free of Node-only imports (it is bundled for browsers).
 */
import type * as core from "@sbx/core";
import { type CaseResult, defineConformanceSuite, runConformance, type SdkModule } from "@sbx/testing/conformance";
import { knownDifferencesOf, type RemoteTarget, targetName } from "./targets.js";

/** Prefix of a result line on a runtime's stdout / console. */
export const RESULT_PREFIX = "SBX-CONFORMANCE-RESULT ";

export async function runRemoteConformance(
  runtime: string,
  sdk: SdkModule,
  makeClient: (target: RemoteTarget) => core.SandboxClient,
  targets: readonly RemoteTarget[],
  report: (result: CaseResult) => void,
  filter?: RegExp,
): Promise<CaseResult[]> {
  return runConformance(
    (t) => {
      for (const target of targets) {
        defineConformanceSuite(t, {
          name: targetName(runtime, target),
          sdk,
          makeClient: () => makeClient(target),
          knownDifferences: knownDifferencesOf(target),
        });
      }
    },
    { onResult: report, ...(filter ? { filter } : {}) },
  );
}
