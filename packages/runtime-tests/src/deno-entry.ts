/**
 * The conformance suite in Deno, through @sbx/deno:
 * `deno run --node-modules-dir=manual --sloppy-imports --allow-net=<targets> src/deno-entry.ts '<targets JSON>' [filter]`.
 * Prints one result line per case (RESULT_PREFIX + JSON) and exits 1 if any failed. Started by
 * deno.test.ts, which starts the targets; runs by hand against any server too.
 */
import * as sdk from "@sbx/deno";
import { RESULT_PREFIX, runRemoteConformance } from "./remote-suite.js";
import type { RemoteTarget } from "./targets.js";

/** The bits of Deno's global this script uses (tsc builds it without Deno's types). */
declare const Deno: { readonly args: readonly string[]; exit(code: number): never };

const targets = JSON.parse(Deno.args[0] ?? "[]") as RemoteTarget[];
if (targets.length === 0) {
  console.error('usage: deno run … src/deno-entry.ts \'[{"kind":"real server","url":"http://…","token":"…"}]\'');
  Deno.exit(2);
}
const filter = Deno.args[1] ? new RegExp(Deno.args[1]) : undefined;

const results = await runRemoteConformance(
  "deno",
  sdk,
  (target) => new sdk.SandboxClient({ endpoint: target.url, token: target.token }),
  targets,
  (result) => console.log(RESULT_PREFIX + JSON.stringify(result)),
  filter,
);
Deno.exit(results.every((r) => r.ok) ? 0 : 1);
