// Sandboxes' outbound network, for real: the "internet" is the test's own hosts in a network
// namespace it makes (198.18.0.0/15, plus a stand-in metadata address), reached through a veth
// from this host, with a DNS resolver of its own; the server's egress ceiling keeps every
// sandbox inside those, so nothing here reaches beyond this machine.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { join, resolve } from "node:path";
import { type Sandbox, SandboxClient } from "@sbx/node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { startTestResolver, type TestResolver } from "./runtime/local/test-support/dns-resolver.js";
import type { ServerOptions } from "./server.js";
import { realServerAvailable, startTestServer, useTestServer } from "./test-support.js";

const available = await realServerAvailable();

const N = (process.pid % 200) + 20;
const NETNS = `sbxt-inet-${process.pid}`;
const HOST_END = `sbxti${process.pid}`.slice(0, 15);
const WEB = `198.18.${N}.2`; // the test host's address on its veth
const OTHER = `198.19.${N}.2`; // another address of it, in another range
const METADATA = "169.254.169.254"; // a stand-in metadata server on the test host
const GATEWAY_HOST = `198.18.${N}.1`;
const ECHO_PORT = 7007;
const NAME = "web.sbx.test";

const sh = (command: string) => {
  const r = spawnSync("sh", ["-c", command], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${command}: ${r.stderr}`);
  return r.stdout;
};

/** The test's hosts: HTTP on port 80 and a TCP echo, on every address of the namespace. */
const HOSTS_PY = `
import socketserver, http.server, threading
class Web(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from " + self.server.server_address[0] + "\\n").encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(4096)
            if not data: return
            self.request.sendall(data)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
for address in ["${WEB}", "${OTHER}", "${METADATA}"]:
    threading.Thread(target=socketserver.ThreadingTCPServer((address, 80), Web).serve_forever, daemon=True).start()
    threading.Thread(target=socketserver.ThreadingTCPServer((address, ${ECHO_PORT}), Echo).serve_forever, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
`;

/** Python run inside a sandbox: its output (stdout and stderr). */
async function py(sb: Sandbox, code: string): Promise<string> {
  const p = await sb.exec(["python3", "-c", code], { stderr: "stdout" });
  const [out] = await Promise.all([p.stdout.readText(), p.wait()]);
  return out;
}

/** Tries a TCP connection from the sandbox: "open", or the error it got. */
const connectPy = (targets: readonly (readonly [string, number])[]) => `
import socket
for host, port in ${JSON.stringify(targets)}:
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect((host, port)); print(host, port, "open")
    except OSError as e:
        print(host, port, "refused", e)
    s.close()
`;

const fetchPy = (url: string) => `
import urllib.request
try:
    print(urllib.request.urlopen("${url}", timeout=5).read().decode().strip())
except Exception as e:
    print("failed", e)
`;

const resolvePy = `
import socket
try:
    print("resolved", socket.gethostbyname("${NAME}"))
except OSError as e:
    print("unresolved", e)
`;

/** Waits until `path` exists in the sandbox (a process there made it). */
async function waitForFile(sb: Sandbox, path: string): Promise<void> {
  const out = await py(
    sb,
    `import os, time
for i in range(400):
    if os.path.exists("${path}"): break
    time.sleep(0.05)
print(os.path.exists("${path}"))`,
  );
  expect(out, path).toBe("True\n");
}

const addressPy = `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(("${WEB}", 9)); print(s.getsockname()[0])
`;

/** The server's nftables table (one per data dir, see local-runtime.ts). */
const tableOf = (dataDir: string) =>
  `sbx_${createHash("sha256")
    .update(resolve(join(dataDir, "runtime")))
    .digest("hex")
    .slice(0, 10)}`;
const listTable = (table: string) => spawnSync("nft", ["list", "table", "inet", table], { encoding: "utf8" });
const hostLinks = () => JSON.parse(sh("ip -j link show")) as { ifname: string; ifalias?: string }[];

if (available) {
  describe("sandboxes' outbound network (real server)", () => {
    const options: { -readonly [K in keyof ServerOptions]?: ServerOptions[K] } = {};
    let resolver: TestResolver;
    let hosts: ReturnType<typeof spawn>;
    beforeAll(async () => {
      resolver = await startTestResolver({ [NAME]: WEB });
      sh(`ip netns add ${NETNS}`);
      sh(`ip link add ${HOST_END} type veth peer name eth0 netns ${NETNS}`);
      sh(`ip addr add ${GATEWAY_HOST}/24 dev ${HOST_END} && ip link set ${HOST_END} up`);
      sh(
        `ip -n ${NETNS} addr add ${WEB}/24 dev eth0 && ip -n ${NETNS} addr add ${OTHER}/32 dev lo && ip -n ${NETNS} addr add ${METADATA}/32 dev lo`,
      );
      sh(
        `ip -n ${NETNS} link set lo up && ip -n ${NETNS} link set eth0 up && ip -n ${NETNS} route add default via ${GATEWAY_HOST}`,
      );
      sh(`ip route add ${OTHER}/32 via ${WEB} && ip route add ${METADATA}/32 via ${WEB}`);
      hosts = spawn("ip", ["netns", "exec", NETNS, "python3", "-c", HOSTS_PY], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      await new Promise<void>((resolve) => hosts.stdout?.once("data", () => resolve()));
      // The egress ceiling holds the test's hosts alone, the metadata stand-in and the pool of
      // sandbox ranges: what stops those is the always-denied set, not the ceiling.
      options.network = {
        allow: ["198.18.0.0/15", `${METADATA}/32`, "10.213.0.0/16"],
        dnsUpstream: [resolver.upstream],
        maxConnections: 8,
      };
    });
    afterAll(() => {
      hosts?.kill("SIGKILL");
      resolver?.socket.close();
      spawnSync("sh", [
        "-c",
        `ip route del ${OTHER}/32; ip route del ${METADATA}/32; ip link del ${HOST_END}; ip netns del ${NETNS}`,
      ]);
    });
    const server = useTestServer(options);
    let client: SandboxClient;
    beforeAll(() => {
      client = new SandboxClient({ endpoint: server.url, token: server.token });
    });
    afterAll(async () => {
      await client?.close();
    });

    it("is on by default: HTTP to the test's host, DNS through the server's forwarder", async () => {
      // (The host reaches them too: the setup itself works.)
      expect(await (await fetch(`http://${METADATA}/`)).text()).toBe(`hello from ${METADATA}\n`);
      await using sb = await client.sandboxes.create();
      expect(await py(sb, fetchPy(`http://${WEB}/`))).toBe(`hello from ${WEB}\n`);
      expect(await py(sb, resolvePy)).toBe(`resolved ${WEB}\n`);
      expect(await py(sb, fetchPy(`http://${NAME}/`))).toBe(`hello from ${WEB}\n`);
      const resolv = await sb.exec(["cat", "/etc/resolv.conf"]);
      expect(await resolv.stdout.readText()).toMatch(/^nameserver 10\.213\.\d+\.1\n$/);
      // IPv4 only: no IPv6 address on its link.
      expect(await py(sb, `print(open("/proc/net/if_inet6").read().count("eth0"))`)).toBe("0\n");
    });

    it("blockNetwork: no route out and no DNS", async () => {
      await using sb = await client.sandboxes.create({ blockNetwork: true });
      const out = await py(sb, connectPy([[WEB, 80]]));
      expect(out).toMatch(/refused .*unreachable/i);
      expect(await py(sb, resolvePy)).toMatch(/^unresolved/);
    });

    it("cidrAllowlist: the listed range only", async () => {
      await using sb = await client.sandboxes.create({ cidrAllowlist: [`198.18.${N}.0/24`, "2001:db8::/32"] });
      const out = await py(
        sb,
        connectPy([
          [WEB, 80],
          [OTHER, 80],
        ]),
      );
      expect(out).toContain(`${WEB} 80 open`);
      expect(out).toMatch(new RegExp(`${OTHER.replaceAll(".", "\\.")} 80 refused`));
      // DNS still works (the forwarder is the gateway's, not a destination).
      expect(await py(sb, resolvePy)).toBe(`resolved ${WEB}\n`);
    });

    it("never reaches the host (any address, the server's port), metadata, or another sandbox", async () => {
      await using other = await client.sandboxes.create();
      await using sb = await client.sandboxes.create();
      const otherAddress = (await py(other, addressPy)).trim();
      await other.exec([
        "python3",
        "-c",
        "import socket\ns=socket.socket(); s.bind(('0.0.0.0', 8000)); s.listen(); open('/tmp/listening', 'w')\nwhile True: s.accept()[0].close()",
      ]);
      await waitForFile(other, "/tmp/listening");
      // (It does listen: reached from inside its own sandbox.)
      expect(await py(other, connectPy([[otherAddress, 8000]]))).toContain("open");
      const port = Number(new URL(server.url).port);
      const hostAddresses = [
        ...new Set(
          (JSON.parse(sh("ip -4 -j addr show")) as { addr_info: { local: string }[] }[]).flatMap((l) =>
            l.addr_info.map((a) => a.local),
          ),
        ),
      ];
      expect(hostAddresses).toContain(GATEWAY_HOST);
      const targets: [string, number][] = [
        ...hostAddresses.flatMap((a): [string, number][] => [
          [a, port],
          [a, 22],
        ]),
        [METADATA, 80],
        [otherAddress, 8000],
      ];
      const out = await py(sb, connectPy(targets));
      expect(out).not.toContain("open");
      expect(out.split("\n").filter((line) => / refused /.test(line))).toHaveLength(targets.length);
      // The server's loopback port is the sandbox's own loopback (nothing listens there).
      expect(await py(sb, connectPy([["127.0.0.1", port]]))).toMatch(/refused .*Connection refused/);
    });

    it("limits the connections one sandbox has tracked", async () => {
      await using sb = await client.sandboxes.create();
      const out = await py(
        sb,
        `import socket
held, refused = [], 0
for i in range(12):
    s = socket.socket(); s.settimeout(3)
    try:
        s.connect(("${WEB}", ${ECHO_PORT})); held.append(s)
    except OSError:
        refused += 1
print(len(held), refused)`,
      );
      expect(out).toBe("8 4\n");
    });

    it("the gateway answers only on sandboxes' links; host users other than root cannot send into a sandbox", async () => {
      await using sb = await client.sandboxes.create();
      const address = (await py(sb, addressPy)).trim();
      const gateway = (await py(sb, `print(open("/etc/resolv.conf").read().split()[1])`)).trim();
      // A neighbour (the test's host, routing through this one) sends a query as the sandbox.
      const query = (name: string) =>
        `bytes.fromhex("abcd01000001000000000000") + b"".join(bytes([len(l)]) + l.encode() for l in "${name}".split(".")) + b"\\0\\0\\1\\0\\1"`;
      sh(
        `ip netns exec ${NETNS} python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_IP, 19, 1)  # IP_TRANSPARENT: the sandbox address as its source
s.bind(("${address}", 5353)); s.sendto(${query("spoofed.sbx.test")}, ("${gateway}", 53))'`,
      );
      // (Then the sandbox asks for itself: by then the neighbour's query was relayed, if ever.)
      expect(await py(sb, resolvePy)).toBe(`resolved ${WEB}\n`);
      expect(resolver.asked).toContain(NAME);
      expect(resolver.asked).not.toContain("spoofed.sbx.test");

      // Datagrams into the sandbox from the host: one from a host user (first), one from root.
      const p = await sb.exec(
        [
          "python3",
          "-c",
          `import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 9000)); open("/tmp/bound", "w")
print(s.recvfrom(100)[0].decode(), flush=True)`,
        ],
        { stderr: "stdout" },
      );
      await waitForFile(sb, "/tmp/bound");
      // (A refused send fails with EPERM: the user sees that, the sandbox nothing.)
      const send = (who: string) =>
        `/usr/bin/python3 -c 'import socket
try:
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"from ${who}", ("${address}", 9000))
except OSError as e:
    print(e)'`;
      sh(`setpriv --reuid=65534 --regid=65534 --clear-groups ${send("a host user")}`);
      sh(send("root"));
      const [got] = await Promise.all([p.stdout.readText(), p.wait()]);
      expect(got).toBe("from root\n");
    });

    it("reaches no host port that another table publishes by DNAT (on the gateway or any host address)", async () => {
      // A stand-in for a published port (Docker's, kube's NodePorts): the host's local
      // addresses, a port of the test's own, forwarded to the test's web host.
      const port = 40_000 + (process.pid % 20_000);
      const dnat = `sbxt_dnat_${process.pid}`;
      sh(
        `nft -f - <<'EOF'
table ip ${dnat} {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    fib daddr type local tcp dport ${port} dnat to ${WEB}:80
  }
}
EOF`,
      );
      try {
        await using sb = await client.sandboxes.create();
        const gateway = (await py(sb, `print(open("/etc/resolv.conf").read().split()[1])`)).trim();
        const out = await py(
          sb,
          connectPy([
            [gateway, port],
            [GATEWAY_HOST, port],
          ]),
        );
        expect(out).not.toContain("open");
        expect(out.split("\n").filter((line) => / refused /.test(line))).toHaveLength(2);
        // (The sandbox still reaches the web host itself, and its DNS.)
        expect(await py(sb, connectPy([[WEB, 80]]))).toContain("open");
        expect(await py(sb, resolvePy)).toBe(`resolved ${WEB}\n`);
      } finally {
        spawnSync("nft", ["delete", "table", "ip", dnat]);
      }
    });

    it("counts what a sandbox sends to the host (its DNS) in the same tracked limit", async () => {
      await using sb = await client.sandboxes.create();
      const address = (await py(sb, addressPy)).trim();
      // Datagrams to the gateway's DNS port, each from a new socket (a new tracked flow each).
      const out = await py(
        sb,
        `import socket
gateway = open("/etc/resolv.conf").read().split()[1]
for i in range(40):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(b"not a query", (gateway, 53))
    except OSError:
        pass
    s.close()
print("sent")`,
      );
      expect(out).toBe("sent\n");
      const tracked = sh(`conntrack -L -f ipv4 -s ${address} 2>/dev/null`).split("\n").filter(Boolean);
      expect(tracked.length).toBeGreaterThan(0);
      expect(tracked.length).toBeLessThanOrEqual(8);
    });

    it("a policy change cuts an open connection at once, and loosening allows new ones", async () => {
      await using sb = await client.sandboxes.create();
      const p = await sb.exec(
        [
          "python3",
          "-c",
          `import socket, os, time
s = socket.create_connection(("${WEB}", ${ECHO_PORT}), timeout=5)
s.sendall(b"one"); print("echo", s.recv(10).decode(), flush=True); open("/tmp/started", "w")
while not os.path.exists("/tmp/go"): time.sleep(0.05)
s.settimeout(3)
try:
    s.sendall(b"two"); print("echo", s.recv(10).decode(), flush=True)
except OSError as e:
    print("cut", e, flush=True)`,
        ],
        { stderr: "stdout" },
      );
      const output = p.stdout.readText();
      // The connection works before the change (its first echo comes back, then it waits).
      await waitForFile(sb, "/tmp/started");
      await sb.update({ blockNetwork: true });
      await sb.write("/tmp/go", "");
      const text = await output;
      expect(text).toMatch(/^echo one\ncut/);
      expect(await py(sb, connectPy([[WEB, ECHO_PORT]]))).toMatch(/refused/);
      await sb.update({ blockNetwork: false });
      expect(await py(sb, connectPy([[WEB, ECHO_PORT]]))).toMatch(/open/);
      await sb.update({ cidrAllowlist: [`${OTHER}/32`] });
      expect(await py(sb, connectPy([[WEB, ECHO_PORT]]))).toMatch(/refused/);
      expect(await py(sb, connectPy([[OTHER, ECHO_PORT]]))).toMatch(/open/);
    });

    it("leaves nothing in nftables or the host's links when a sandbox ends", async () => {
      const sb = await client.sandboxes.create();
      const address = (await py(sb, addressPy)).trim();
      const table = tableOf(server.dataDir);
      expect(listTable(table).stdout).toContain(address);
      await sb.terminate({ wait: true });
      const hex = address
        .split(".")
        .map((o) => Number(o).toString(16).padStart(2, "0"))
        .join("");
      // (Its destroy follows its end.)
      await vi.waitFor(
        () => {
          expect(listTable(table).stdout).not.toContain(`${address} `);
          expect(listTable(table).stdout).not.toContain(`${address},`);
          expect(hostLinks().map((l) => l.ifname)).not.toContain(`sbx${hex}`);
        },
        { timeout: 20_000, interval: 100 },
      );
    });
  });

  describe("a server's network on this host (real server)", () => {
    it("is gone when the server stops: its table and every link of it", async () => {
      const server = await startTestServer({ network: { allow: ["198.18.0.0/15"] } });
      const table = tableOf(server.dataDir);
      try {
        const client = new SandboxClient({ endpoint: server.url, token: server.token });
        await using sb = await client.sandboxes.create();
        expect(await (await sb.exec(["true"])).wait()).toBe(0);
        expect(listTable(table).status).toBe(0);
        await client.close();
      } finally {
        await server.close();
        server.removeData();
      }
      expect(listTable(table).status).not.toBe(0);
      const alias = `sbx:${table.slice(4)}`;
      expect(hostLinks().filter((l) => l.ifalias === alias)).toEqual([]);
    });
  });
}
