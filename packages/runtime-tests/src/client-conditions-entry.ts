// Run by Deno and by Bun: does `@sbx/client` resolve to this runtime's adapter? Prints one
// JSON line. (Node and browser bundles are checked in packages/client.)
import * as client from "@sbx/client";
import * as clientEffect from "@sbx/client/effect";

const runtime = "Deno" in globalThis ? "deno" : "Bun" in globalThis ? "bun" : "unknown";
const adapter = runtime === "deno" ? await import("@sbx/deno") : await import("@sbx/bun");
const adapterEffect = runtime === "deno" ? await import("@sbx/deno/effect") : await import("@sbx/bun/effect");
const sandbox = new client.SandboxClient({ endpoint: "http://127.0.0.1:9" });
console.log(
  JSON.stringify({
    runtime,
    sameClient: client.SandboxClient === adapter.SandboxClient,
    sameLayer: clientEffect.layer === adapterEffect.layer,
    isAdapterClient: sandbox instanceof adapter.SandboxClient,
  }),
);
await sandbox.close();
