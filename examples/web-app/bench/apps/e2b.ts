// The bundle-size benchmark's app, written with E2B's SDK (`e2b` on npm, from its public
// docs): create a sandbox, run a command, read its output, show it. The same app as sbx.ts.
import { Sandbox } from "e2b";

const params = new URLSearchParams(location.search);
const sandbox = await Sandbox.create({ apiKey: params.get("apiKey") ?? "" });
const result = await sandbox.commands.run("echo hello from the sandbox");
document.body.textContent = result.stdout;
await sandbox.kill();
