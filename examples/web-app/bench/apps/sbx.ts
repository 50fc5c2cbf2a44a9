// The bundle-size benchmark's app, written with @sbx/web: create a sandbox, run a command,
// read its output, show it. The same app as e2b.ts.
import { SandboxClient } from "@sbx/web";

const params = new URLSearchParams(location.search);
const client = new SandboxClient({ endpoint: params.get("endpoint") ?? undefined, token: params.get("token") ?? "" });
const sandbox = await client.sandboxes.create();
const proc = await sandbox.exec(["echo", "hello from the sandbox"]);
const stdout = await proc.stdout.readText();
document.body.textContent = stdout;
await sandbox.terminate();
