/**
 * The conformance suite in Bun, through @sbx/bun: `bun run src/bun-entry.ts '<targets JSON>'`
 * (or the targets in SBX_TARGETS), optionally `SBX_CONFORMANCE_FILTER=<regexp>`. Prints one
 * result line per case (RESULT_PREFIX + JSON) and exits 1 if any failed. Started by
 * bun.test.ts, which starts the targets; runs by hand against any server too.
 */
import * as sdk from "@sbx/bun";
import { RESULT_PREFIX, runRemoteConformance } from "./remote-suite.js";
import type { RemoteTarget } from "./targets.js";

const targets = JSON.parse(process.argv[2] ?? process.env.SBX_TARGETS ?? "[]") as RemoteTarget[];
if (targets.length === 0) {
  console.error('usage: bun run src/bun-entry.ts \'[{"kind":"real server","url":"http://…","token":"…"}]\'');
  process.exit(2);
}
const filter = process.env.SBX_CONFORMANCE_FILTER ? new RegExp(process.env.SBX_CONFORMANCE_FILTER) : undefined;

const results = await runRemoteConformance(
  "bun",
  sdk,
  (target) => new sdk.SandboxClient({ endpoint: target.url, token: target.token }),
  targets,
  (result) => console.log(RESULT_PREFIX + JSON.stringify(result)),
  filter,
);
process.exit(results.every((r) => r.ok) ? 0 : 1);
