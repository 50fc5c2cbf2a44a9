// sb.tunnel throughput, with a direct loopback TCP copy of the same bytes measured in the same
// run as the baseline (its servers in this process, one thread, as the direct copy's two ends are):
//   upload:   a local client writes N MiB into the tunnel; the sandbox's port (a sink) counts
//             them and answers the count when the client ends;
//   download: the sandbox's port writes N MiB; the local client reads them to the end;
//   100 at once: 100 local connections through one tunnel (one connection to the server),
//             each sending M MiB to an echo and reading them back, every byte checked.
// Against one of two servers (SBX_BENCH_TUNNEL_SERVER):
//   fake (default): fake.listen() (the tunnel route the sbx server mounts, the fake's port
//             registry behind it: onPortConnection handlers), in this process with the client;
//   real:     `sbx server` in a process of its own (the CLI's build; as root: bubblewrap, its
//             own data dir, 127.0.0.1), a sandbox from the default image whose ports are served
//             by a Python program in it (python3 from the host's /usr); the bytes go from the
//             client (this process) through the server's tunnel relay (agent/relay_mux.go: the
//             server hands it each connection) over the sandbox's own link.
// Run: node packages/node/bench/tunnel.bench.ts after a build (SBX_BENCH_TUNNEL_MIB, default
// 1024; SBX_BENCH_TUNNEL_RUNS, default 3, the best run counts; SBX_BENCH_TUNNEL_EACH_MIB,
// default 4; SBX_BENCH_TUNNEL_ONLY, default "up,down,many": the parts to run).
// Direct and tunnel runs alternate; each reports its best run's MiB/s and CPU seconds per GiB
// (this process's: on a busy machine the CPU cost varies less than the rate; with the real
// server, the server process's and its tunnel relay's too). Prints a line per part and JSON; asserts nothing but the bytes.
import { readdirSync, readFileSync } from "node:fs";
import { type Sandbox, SandboxClient } from "@sbx/node";
import { startSbxServer } from "@sbx/test-fixtures/sbx-server";
import {
  type Comparison,
  compare,
  directServers,
  download,
  ECHO,
  echoChecked,
  MIB,
  patternOf,
  SINK,
  SOURCE,
  serveFakePorts,
  upload,
} from "@sbx/test-fixtures/tunnel-bench";
import { createFakeServer } from "@sbx/testing";

const SERVER = process.env.SBX_BENCH_TUNNEL_SERVER ?? "fake";
if (SERVER !== "fake" && SERVER !== "real")
  throw new Error(`SBX_BENCH_TUNNEL_SERVER: "fake" or "real", not "${SERVER}"`);
const TOTAL_MIB = Number(process.env.SBX_BENCH_TUNNEL_MIB ?? 1024);
const RUNS = Number(process.env.SBX_BENCH_TUNNEL_RUNS ?? 3);
const EACH_MIB = Number(process.env.SBX_BENCH_TUNNEL_EACH_MIB ?? 4);
const ONLY = (process.env.SBX_BENCH_TUNNEL_ONLY ?? "up,down,many").split(",");
const CONNECTIONS = 100;
const TOTAL = TOTAL_MIB * MIB;

/**
 * The sandbox's side on the real server, in Python (the default image is the host's /usr):
 * SINK, SOURCE (argv[1] bytes) and ECHO, a thread per connection, 1 MiB buffers, recv_into and
 * sendall (the GIL let go while the kernel copies). Prints "ready" once all three listen.
 */
const SANDBOX_PORTS_PY = `
import socket, sys, threading
TOTAL = int(sys.argv[1])
BUF = 1 << 20

def sink(conn):
    buf, n = bytearray(BUF), 0
    while True:
        got = conn.recv_into(buf)
        if not got:
            break
        n += got
    conn.sendall(str(n).encode())
    conn.close()

def source(conn):
    block, left = memoryview(b"\\x07" * BUF), TOTAL
    while left > 0:
        conn.sendall(block[: min(left, BUF)])
        left -= BUF
    conn.close()

def echo(conn):
    buf = bytearray(BUF)
    view = memoryview(buf)
    while True:
        got = conn.recv_into(buf)
        if not got:
            break
        conn.sendall(view[:got])
    conn.shutdown(socket.SHUT_WR)
    conn.close()

def serve(port, handle):
    listener = socket.create_server(("0.0.0.0", port), backlog=512)
    def accept():
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()

for port, handle in ((${SINK}, sink), (${SOURCE}, source), (${ECHO}, echo)):
    serve(port, handle)
print("ready", flush=True)
threading.Event().wait()
`;

interface Target {
  /** What the tunnel reaches, for the report. */
  readonly label: string;
  readonly sandbox: Sandbox;
  /** CPU seconds the server's process has used so far, where it has a process of its own. */
  readonly serverCpu?: () => number;
  close(): Promise<void>;
}

/** The fake, listening in this process, its port handlers the sandbox's side. */
async function fakeTarget(): Promise<Target> {
  const fake = createFakeServer();
  serveFakePorts(fake, TOTAL);
  const { url } = await fake.listen();
  const client = new SandboxClient({ endpoint: url });
  const sandbox = await client.sandboxes.create({ app: "bench" });
  return {
    label: "fake.listen()",
    sandbox,
    async close() {
      await client.close();
      await fake.close();
    },
  };
}

/** `sbx server` in a process of its own, and a sandbox on it running SANDBOX_PORTS_PY. */
async function realTarget(): Promise<Target> {
  const server = await startSbxServer({ prefix: "sbx-tunnel-bench-" });
  const client = new SandboxClient({ endpoint: server.endpoint, token: server.token });
  const close = async () => {
    await client.close();
    await server.close();
  };
  try {
    // (sb.tunnel reaches any port of the sandbox: no `ports` needed; nothing goes out.)
    const sandbox = await client.sandboxes.create({ app: "bench", blockNetwork: true, timeoutMs: 3_600_000 });
    const ports = await sandbox.exec(["python3", "-c", SANDBOX_PORTS_PY, String(TOTAL)], { stderr: "stdout" });
    let said = "";
    for await (const text of ports.stdout) {
      said += text;
      if (said.includes("ready")) break;
    }
    if (!said.includes("ready")) throw new Error(`the sandbox's ports did not start: ${said}`);
    const cpuOf = (pid: number | undefined) => {
      try {
        const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
        return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in ticks of 10 ms
      } catch {
        return 0; // (gone)
      }
    };
    // The server's tunnel relay (a child of its own) moves the tunnels' bytes: its CPU counts too.
    const relayPid = () => {
      for (const pid of readdirSync("/proc")) {
        if (!/^\d+$/.test(pid)) continue;
        try {
          const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
          const ppid = Number(stat.split(") ")[1]?.split(" ")[1]);
          if (ppid === server.child.pid && readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("relay\0--parent"))
            return Number(pid);
        } catch {}
      }
      return undefined;
    };
    const serverCpu = () => cpuOf(server.child.pid) + cpuOf(relayPid());
    return {
      label: "sbx server (a process of its own), a sandbox running Python",
      sandbox,
      serverCpu,
      async close() {
        await sandbox.terminate();
        await close();
      },
    };
  } catch (error) {
    await close();
    throw error;
  }
}

const target = SERVER === "real" ? await realTarget() : await fakeTarget();
const direct = await directServers(TOTAL);
const tunnels = {
  sink: await target.sandbox.tunnel(SINK),
  source: await target.sandbox.tunnel(SOURCE),
  echo: await target.sandbox.tunnel(ECHO),
};
const payloads = Array.from({ length: CONNECTIONS }, (_, i) => patternOf(i, EACH_MIB * MIB));
const allAtOnce = (port: number) => () => Promise.all(payloads.map((p) => echoChecked(port, p)));

/** The least CPU the server's process spent in one tunnel run of each part, per GiB. */
const serverCpuPerGib: Record<string, number> = {};
/** `tunnel` with the server's CPU noted (where it has a process of its own). */
const noting = (part: string, mib: number, tunnel: () => Promise<unknown>) => async () => {
  const before = target.serverCpu?.();
  const result = await tunnel();
  if (before !== undefined && target.serverCpu) {
    const perGib = +(((target.serverCpu() - before) * 1024) / mib).toFixed(2);
    serverCpuPerGib[part] = Math.min(serverCpuPerGib[part] ?? perGib, perGib);
  }
  return result;
};

/** The parts (SBX_BENCH_TUNNEL_ONLY names them), each a direct copy and the same through a tunnel. */
const parts = [
  {
    part: "up",
    name: "upload",
    mib: TOTAL_MIB,
    direct: () => upload(direct.sink, TOTAL),
    tunnel: () => upload(tunnels.sink.localPort, TOTAL),
    check: (r: unknown) => r === String(TOTAL),
  },
  {
    part: "down",
    name: "download",
    mib: TOTAL_MIB,
    direct: () => download(direct.source),
    tunnel: () => download(tunnels.source.localPort),
    check: (r: unknown) => r === TOTAL,
  },
  {
    part: "many",
    name: "manyAtOnce",
    mib: CONNECTIONS * EACH_MIB,
    direct: allAtOnce(direct.echo),
    tunnel: allAtOnce(tunnels.echo.localPort),
    check: () => true, // echoChecked rejects on any byte amiss
  },
];
console.log(
  `sb.tunnel vs direct loopback TCP (${target.label}, Node ${process.version}, best of ${RUNS}): ` +
    `${TOTAL_MIB} MiB each way; ${CONNECTIONS} connections at once, ${EACH_MIB} MiB each to an echo and back`,
);
const results: Record<string, Comparison> = {};
try {
  for (const { part, name, mib, direct, tunnel, check } of parts) {
    if (!ONLY.includes(part)) continue;
    const what = part === "many" ? `${CONNECTIONS} at once (each way)` : name;
    results[name] = await compare(what, mib, RUNS, direct, noting(name, mib, tunnel), check);
  }
  if (target.serverCpu)
    console.log(`server + tunnel relay CPU s/GiB (tunnel runs, the least): ${JSON.stringify(serverCpuPerGib)}`);
  console.log(
    JSON.stringify({
      server: SERVER,
      mib: TOTAL_MIB,
      runs: RUNS,
      eachMib: EACH_MIB,
      connections: CONNECTIONS,
      ...results,
      ...(target.serverCpu ? { serverCpuPerGib } : {}),
    }),
  );
} finally {
  for (const tunnel of Object.values(tunnels)) await tunnel.close();
  direct.close();
  await target.close();
}
