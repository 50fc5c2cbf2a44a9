/**
 * `client.images.import(path)` in Deno, through @sbx/deno:
 * `deno run … src/deno-images-entry.ts '<target JSON>' <layout dir> <tarball> <missing path>`.
 * Prints one line: RESULT_PREFIX + JSON of what it saw (see image-import-checks.ts).
 */
import { SandboxClient } from "@sbx/deno";
import { checkImports } from "./image-import-checks.js";
import { RESULT_PREFIX } from "./remote-suite.js";
import type { RemoteTarget } from "./targets.js";

declare const Deno: { readonly args: readonly string[] };

const [targetJson, layout, tarball, missing] = Deno.args;
if (!targetJson || !layout || !tarball || !missing) {
  throw new Error("usage: deno-images-entry.ts <target JSON> <layout dir> <tarball> <missing path>");
}
const target = JSON.parse(targetJson) as RemoteTarget;
await using client = new SandboxClient({ endpoint: target.url, token: target.token });
console.log(RESULT_PREFIX + JSON.stringify(await checkImports(client, { layout, tarball, missing })));
