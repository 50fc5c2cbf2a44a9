// temporary experiment (not committed): client CPU per exec+wait through the SDK, Connect's client, bare http2
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import http2 from "node:http2";
import { SandboxClient } from "../node/dist/index.js";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "../node/node_modules/@connectrpc/connect-node/dist/esm/index.js";
import { ProcessService, StartProcessRequestSchema, WaitProcessRequestSchema, WaitProcessResponseSchema, StartProcessResponseSchema } from "@sbx/proto";
import { toBinary, fromBinary, create } from "@bufbuild/protobuf";
const wt = "/work/wt-exec";
const ROUNDS = Number(process.argv[2] ?? 500);
const dataDir = mkdtempSync(join(tmpdir(), "sbx-loop-"));
const server = spawn(process.execPath, [join(wt, "packages/cli/dist/main.js"), "server", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--token", "bench"], { stdio: ["ignore", "pipe", "ignore"] });
const endpoint = await new Promise((resolve) => { let out = ""; server.stdout.on("data", (d) => { out += d; const m = /listening on (\S+)/.exec(out); if (m) resolve(m[1]); }); });
const ticks = () => { const f = readFileSync(`/proc/${server.pid}/stat`, "utf8").split(") ")[1].split(" "); return (Number(f[11]) + Number(f[12])) * 10; };
const client = new SandboxClient({ endpoint, token: "bench" });
const sb = await client.sandboxes.create({ app: "bench" });
const headers = { authorization: "Bearer bench" };
const connectClient = createClient(ProcessService, createConnectTransport({ baseUrl: endpoint, httpVersion: "2", acceptCompression: [] }));
const session = http2.connect(endpoint);
let n = 0;
const rawUnary = (path, bytes) => new Promise((resolve, reject) => {
  const s = session.request({ ":method": "POST", ":path": path, "content-type": "application/proto", "connect-protocol-version": "1", "connect-timeout-ms": "30000", ...headers });
  const chunks = [];
  s.on("data", (c) => chunks.push(c));
  s.on("end", () => resolve(Buffer.concat(chunks)));
  s.on("error", reject);
  s.end(bytes);
});
const modes = {
  sdk: async () => { await (await sb.exec(["true"])).wait(); },
  connect: async () => {
    const processId = `p-${n++}x${Date.now()}`;
    await connectClient.startProcess({ sandboxId: sb.id, processId, spec: { argv: ["true"] } }, { headers, timeoutMs: 30000 });
    await connectClient.waitProcess({ sandboxId: sb.id, processId, timeoutMs: 30000 }, { headers, timeoutMs: 90000 });
  },
  raw: async () => {
    const processId = `p-${n++}y${Date.now()}`;
    const a = await rawUnary("/sbx.v1.ProcessService/StartProcess", toBinary(StartProcessRequestSchema, create(StartProcessRequestSchema, { sandboxId: sb.id, processId, spec: { argv: ["true"] } })));
    fromBinary(StartProcessResponseSchema, a);
    const b = await rawUnary("/sbx.v1.ProcessService/WaitProcess", toBinary(WaitProcessRequestSchema, create(WaitProcessRequestSchema, { sandboxId: sb.id, processId, timeoutMs: 30000 })));
    fromBinary(WaitProcessResponseSchema, b);
  },
};
const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return +s[Math.floor((p / 100) * s.length)].toFixed(2); };
for (let pass = 0; pass < Number(process.argv[3] ?? 2); pass++) for (const [name, f] of Object.entries(modes)) {
  for (let i = 0; i < 30; i++) await f();
  const lat = []; const s0 = ticks(); const c0 = process.cpuUsage();
  for (let i = 0; i < ROUNDS; i++) { const t = performance.now(); await f(); lat.push(performance.now() - t); }
  const c = process.cpuUsage(c0); const s = ticks() - s0;
  console.log(JSON.stringify({ mode: name, p50: pct(lat, 50), p99: pct(lat, 99), clientCpuMs: +((c.user + c.system) / 1000 / ROUNDS).toFixed(3), serverCpuMs: +(s / ROUNDS).toFixed(3) }));
}
await sb.terminate(); session.close(); await client.close(); server.kill("SIGTERM"); await new Promise((r) => server.on("exit", r)); rmSync(dataDir, { recursive: true, force: true });
