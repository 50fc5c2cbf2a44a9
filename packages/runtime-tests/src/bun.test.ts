// The conformance suite in Bun: starts `bun` (the npm package's binary) on bun-entry.ts against
// a real server and the fake, and turns what it reports into one test per case.
import { describe } from "vitest";
import { bunBinary, runBun } from "./bun-support.js";
import { declareRuntimeConformance, parseResults, realServerAvailable } from "./support.js";

const bun = bunBinary();
const runnable = bun !== undefined && (await realServerAvailable());

describe.skipIf(!runnable)("bun", () => {
  declareRuntimeConformance("bun", async (targets) => {
    const { stdout } = await runBun(bun!, ["run", "src/bun-entry.ts", JSON.stringify(targets)]);
    return parseResults(stdout);
  });
});
