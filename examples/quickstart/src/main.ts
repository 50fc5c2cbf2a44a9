// Runs the quickstart against the server named by SBX_ENDPOINT / SBX_TOKEN.
import { SandboxClient } from "@sbx/node";
import { quickstart } from "./quickstart.ts";

await using client = new SandboxClient();
console.log(`sbx quickstart against ${client.endpoint}`);
await quickstart(client);
