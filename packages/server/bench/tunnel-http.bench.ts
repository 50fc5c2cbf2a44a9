// HTTP through a sandbox's tunnel (issue 18): an app in a sandbox exposed with `ports`, reached
// through the server's tunnel listener, against the same app reached straight at the sandbox's
// own address from this host (the baseline, same run, same client). Prints the added latency
// of small GETs (p50/p99 over keep-alive connections) and the throughput of a 1 GiB download
// (curl to /dev/null), with the ratio. Goals: added p50 ≤ 1 ms; download ≥ 0.5 of direct. A
// tunnel is served by the server's relay (the agent binary's `relay`: each connection spliced
// to one into the sandbox, HTTP/1.x heads checked on the way), so keep-alive holds end to end.
// Run as root after a build: node packages/server/bench/tunnel-http.bench.ts
// Env: SBX_BENCH_TUNNEL_GETS (default 2000), SBX_BENCH_TUNNEL_MIB (default 1024).
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { Agent, get } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { SandboxClient } from "@sbx/node";
import { startServer } from "../dist/index.js";
import { stats } from "./bench-support.ts";

const run = promisify(execFile);
const GETS = Number(process.env.SBX_BENCH_TUNNEL_GETS ?? 2000);
const MIB = Number(process.env.SBX_BENCH_TUNNEL_MIB ?? 1024);

/** The app: GET /small answers 2 bytes; GET /big answers MIB MiB of zeros (HTTP/1.1 keep-alive). */
const APP = `python3 - <<'EOF'
import http.server
CHUNK = b"\\0" * (1 << 20)
class App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        if self.path == "/big":
            self.send_response(200); self.send_header("Content-Length", str(${MIB} << 20)); self.end_headers()
            for _ in range(${MIB}): self.wfile.write(CHUNK)
        else:
            self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", 8000), App).serve_forever()
EOF`;

const dataDir = mkdtempSync(join(tmpdir(), "sbx-tunnel-bench-"));
const server = await startServer({
  dataDir,
  listen: "127.0.0.1:0",
  token: "bench",
  network: { allow: ["198.18.0.0/15"] }, // reaches nothing beyond this machine
});
try {
  await using client = new SandboxClient({ endpoint: server.url, token: "bench" });
  await using sb = await client.sandboxes.create({ ports: [8000], blockNetwork: true, timeoutMs: 600_000 });
  await sb.run(APP, { wait: false, timeoutMs: 0 });
  const address = (await sb.run("ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1")).stdout.trim();
  const tunnel = (await sb.tunnels())[8000];
  if (!tunnel) throw new Error("no tunnel for port 8000");
  const direct = `http://${address}:8000`;
  for (let i = 0; i < 100; i++) {
    try {
      await fetch(`${direct}/small`);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const getOnce = (url: string) =>
    new Promise<void>((resolve, reject) => {
      get(`${url}/small`, { agent }, (res) => {
        res.resume();
        res.on("end", resolve);
      }).on("error", reject);
    });
  const latencies: Record<string, number[]> = { direct: [], tunnel: [] };
  for (let i = 0; i < 100; i++) {
    await getOnce(direct);
    await getOnce(tunnel.url);
  }
  for (let i = 0; i < GETS; i++) {
    for (const [name, url] of [
      ["direct", direct],
      ["tunnel", tunnel.url],
    ] as const) {
      const start = performance.now();
      await getOnce(url);
      latencies[name]?.push(performance.now() - start);
    }
  }
  agent.destroy();

  // (curl runs beside the server, which is in this process: never block its event loop.)
  const download = async (url: string) => {
    const { stdout } = await run("curl", ["-sS", "-o", "/dev/null", "-w", "%{speed_download}", `${url}/big`]);
    return Number(stdout);
  };
  const speeds: Record<string, number[]> = { direct: [], tunnel: [] };
  for (let round = 0; round < 3; round++) {
    speeds.direct?.push(await download(direct));
    speeds.tunnel?.push(await download(tunnel.url));
  }
  const d = stats(latencies.direct as number[]);
  const t = stats(latencies.tunnel as number[]);
  const best = (xs: number[]) => Math.max(...xs) / (1 << 20);
  console.log(
    `tunnel HTTP (issue 18): ${GETS} keep-alive GETs each, ${MIB} MiB downloads (best of 3), blockNetwork sandbox`,
  );
  console.log(
    `  GET p50: direct ${d.p50.toFixed(2)} ms, tunnel ${t.p50.toFixed(2)} ms, added ${(t.p50 - d.p50).toFixed(2)} ms (goal ≤ 1)`,
  );
  console.log(`  GET p99: direct ${d.p99.toFixed(2)} ms, tunnel ${t.p99.toFixed(2)} ms`);
  const bd = best(speeds.direct as number[]);
  const bt = best(speeds.tunnel as number[]);
  console.log(
    `  download: direct ${bd.toFixed(0)} MiB/s, tunnel ${bt.toFixed(0)} MiB/s, ratio ${(bt / bd).toFixed(2)} (goal ≥ 0.5)`,
  );
} finally {
  await server.close();
  rmSync(dataDir, { recursive: true, force: true });
}
