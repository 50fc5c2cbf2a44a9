// The conformance suite in Deno: starts `deno` (the npm package's binary) on deno-entry.ts
// against a real server and the fake, with network access to those two only, and turns what
// it reports into one test per case.
import { describe } from "vitest";
import { allowNetTo, denoBinary, runDeno } from "./deno-support.js";
import { declareRuntimeConformance, parseResults, realServerAvailable } from "./support.js";

const deno = denoBinary();
const runnable = deno !== undefined && (await realServerAvailable());

describe.skipIf(!runnable)("deno", () => {
  declareRuntimeConformance("deno", async (targets) => {
    const { stdout } = await runDeno(deno!, [
      "run",
      "--node-modules-dir=manual",
      // This package's own modules import each other as `./x.js` (tsc's style); @sbx/deno
      // itself loads from its built package in node_modules, as users get it.
      "--sloppy-imports",
      allowNetTo(targets.map((t) => t.url)),
      "src/deno-entry.ts",
      JSON.stringify(targets),
    ]);
    return parseResults(stdout);
  });
});
