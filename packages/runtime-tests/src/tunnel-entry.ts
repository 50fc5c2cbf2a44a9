/**
 * sb.tunnel in Deno or Bun, through @sbx/deno / @sbx/bun, against a fake whose port ECHO echoes:
 * `deno run … src/tunnel-entry.ts deno '<target JSON>'` or `bun src/tunnel-entry.ts bun '<target JSON>'`.
 * Opens a tunnel, sends through it on 20 local connections at once (node:net, which both
 * runtimes have), closes it, and prints RESULT_PREFIX + JSON of what came back.
 */
import { connect } from "node:net";
import process from "node:process";
import { RESULT_PREFIX } from "./remote-suite.js";
import type { RemoteTarget } from "./targets.js";

const ECHO_PORT = 7000;

const [runtime, targetJson] = process.argv.slice(2);
const target = JSON.parse(targetJson ?? "{}") as RemoteTarget;
const sdk = runtime === "deno" ? await import("@sbx/deno") : await import("@sbx/bun");

const echoOnce = (port: number, message: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1", allowHalfOpen: true }, () => socket.end(message));
    let got = "";
    socket.setEncoding("utf8");
    socket.on("data", (d: string) => {
      got += d;
    });
    socket.on("end", () => {
      socket.end();
      resolve(got);
    });
    socket.on("error", reject);
  });

await using client = new sdk.SandboxClient({ endpoint: target.url, token: target.token });
await using sb = await client.sandboxes.create({ timeoutMs: 120_000 });
const tunnel = await sb.tunnel(ECHO_PORT);
const big = "x".repeat(3 * 1024 * 1024);
const answers = await Promise.all(
  Array.from({ length: 20 }, (_, i) => echoOnce(tunnel.localPort, i === 0 ? big : `connection ${i}`)),
);
await tunnel.close();
const afterClose = await echoOnce(tunnel.localPort, "late").then(
  () => "connected",
  (error: { code?: string }) => error.code ?? "error",
);
console.log(
  RESULT_PREFIX +
    JSON.stringify({
      localPort: tunnel.localPort,
      bigIntact: answers[0] === big,
      small: answers.slice(1),
      afterClose,
    }),
);
process.exit(0);
