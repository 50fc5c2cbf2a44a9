// Containment: each case is an attempt from inside a sandbox that must fail, run against
// the real server with the local runtime. Nothing here weakens isolation to pass.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { SandboxClient, SandboxFilesystemPermissionError } from "@sbx/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AGENT_PIDS_ROOM } from "./runtime/local/cgroups.js";
import { realServerAvailable, startTestServer } from "./test-support.js";

const available = await realServerAvailable();

/** Python run inside the sandbox; prints what happened so assertions can read it. */
const py = (code: string) => ["python3", "-c", code];
const syscall = (name: string, nr: number, args = "") =>
  py(`import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
r = libc.syscall(${nr}${args ? `, ${args}` : ""})
print("${name}", r, os.strerror(ctypes.get_errno()) if r < 0 else "ok")`);

if (available) {
  describe("containment (real server)", () => {
    let server: Awaited<ReturnType<typeof startTestServer>>;
    let client: SandboxClient;
    beforeAll(async () => {
      // (Sandboxes' outbound network stays inside the machine: 198.18.0.0/15 holds nothing here.)
      server = await startTestServer({ network: { allow: ["198.18.0.0/15"] } });
      client = new SandboxClient({ endpoint: server.url, token: server.token });
    });
    afterAll(async () => {
      await client.close();
      await server.close();
      server.removeData();
    });

    const run = async (sb: Awaited<ReturnType<typeof client.sandboxes.create>>, argv: string[]) => {
      const p = await sb.exec(argv, { stderr: "stdout" });
      const [out, code] = await Promise.all([p.stdout.readText(), p.wait()]);
      return { out, code };
    };

    it("cannot see or signal host processes", async () => {
      await using sb = await client.sandboxes.create();
      const { out } = await run(sb, ["sh", "-c", "ls /proc | grep -E '^[0-9]+$' | wc -l; ps -eo comm"]);
      const [count] = out.split("\n");
      expect(Number(count)).toBeLessThan(10);
      expect(out).not.toMatch(/node|vitest/);
      const kill = await run(sb, ["sh", "-c", `kill -0 ${process.pid} 2>&1; echo rc=$?`]);
      expect(kill.out).toMatch(/rc=1/);
    });

    it("has no host secrets, server data or host homes", async () => {
      await using sb = await client.sandboxes.create();
      const { out } = await run(sb, [
        "sh",
        "-c",
        `cat /etc/shadow; cat /etc/gshadow; ls -A /root /home; ls ${server.dataDir}; cat ${server.dataDir}/token; ls /run; ls /.sbx/../root; echo end`,
      ]);
      expect(out).not.toContain(server.token);
      expect(out).toMatch(/\/etc\/shadow: No such file/);
      expect(out).toMatch(new RegExp(`${server.dataDir}.*No such file`));
      expect(out.trim().endsWith("end")).toBe(true);
      const passwd = await run(sb, ["cat", "/etc/passwd"]);
      expect(passwd.out.split("\n").filter(Boolean)).toHaveLength(2);
    });

    it("writes land in the sandbox's own layer; neighbours and the host never see them", async () => {
      await using a = await client.sandboxes.create();
      await using b = await client.sandboxes.create();
      const marker = `m${Date.now()}`;
      const wrote = await run(a, [
        "sh",
        "-c",
        `echo ${marker} > /etc/${marker}; echo ${marker} > /root/${marker}; echo ok`,
      ]);
      expect(wrote.out).toBe("ok\n");
      expect((await run(a, ["cat", `/etc/${marker}`])).out).toBe(`${marker}\n`);
      const other = await run(b, ["sh", "-c", `cat /etc/${marker} /root/${marker} 2>&1; ls /tmp`]);
      expect(other.out).not.toContain(`${marker}\n${marker}`);
      expect(other.out).toMatch(/No such file/);
      expect(() => execFileSync("ls", [`/etc/${marker}`], { stdio: "pipe" })).toThrow();
      const usr = await run(a, ["sh", "-c", "touch /usr/bin/evil 2>&1; echo rc=$?"]);
      expect(usr.out).toMatch(/rc=1/);
    });

    it("with blockNetwork reaches no network address and no host socket", async () => {
      const host = createServer((s) => s.end("host secret\n"));
      await new Promise<void>((r) => host.listen(0, "127.0.0.1", () => r()));
      const port = (host.address() as { port: number }).port;
      try {
        await using sb = await client.sandboxes.create({ blockNetwork: true });
        const { out } = await run(
          sb,
          py(`import socket
for target in [("127.0.0.1", ${port}), ("10.0.0.1", 80), ("1.1.1.1", 53)]:
    s = socket.socket(); s.settimeout(2)
    try:
        s.connect(target); print("CONNECTED", target, s.recv(100))
    except OSError as e:
        print("blocked", target, e)
import os
print(sorted(os.listdir("/run")) if os.path.exists("/run") else "no /run")`),
        );
        expect(out).not.toContain("CONNECTED");
        expect(out).not.toContain("host secret");
        expect(out.match(/blocked/g)).toHaveLength(3);
      } finally {
        host.close();
      }
    });

    it("cannot change its own network: no address, link or route of it can be altered", async () => {
      await using sb = await client.sandboxes.create();
      const { out } = await run(sb, [
        "sh",
        "-c",
        "ip addr add 10.213.255.99/32 dev eth0; echo rc=$?; ip link set eth0 down; echo rc=$?; ip route del default; echo rc=$?; ip link add x type veth peer name y; echo rc=$?; echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6; echo rc=$?",
      ]);
      expect(out.match(/rc=0/g)).toBeNull();
      expect(out.match(/Operation not permitted/g)?.length).toBeGreaterThanOrEqual(4);
      // Still as it was: its address, and the route out.
      const { out: route } = await run(sb, ["ip", "route"]);
      expect(route).toMatch(/^default via 10\.213\.\d+\.1 dev eth0/);
    });

    it("root holds Docker's default capabilities less NET_RAW, MKNOD and AUDIT_WRITE, and cannot mount, unshare, ptrace, use bpf or io_uring", async () => {
      await using sb = await client.sandboxes.create();
      const caps = await run(sb, ["grep", "^Cap", "/proc/self/status"]);
      const sets = Object.fromEntries(
        caps.out
          .trim()
          .split("\n")
          .map((line) => line.split(/:\s+/)),
      );
      // Docker's default set less three (launch-command.ts), in the sandbox's user namespace only; none
      // inheritable or ambient (the agent clears what bwrap leaves there).
      expect(sets).toEqual({
        CapInh: "0000000000000000",
        CapPrm: "00000000800405fb",
        CapEff: "00000000800405fb",
        CapBnd: "00000000800405fb",
        CapAmb: "0000000000000000",
      });
      for (const [name, bit] of [
        ["sys_admin", 21],
        ["net_admin", 12],
        ["sys_ptrace", 19],
        ["net_raw", 13],
        ["mknod", 27],
        ["audit_write", 29],
      ] as const) {
        expect(BigInt(`0x${sets.CapBnd}`) & (1n << BigInt(bit)), name).toBe(0n);
      }
      const status = await run(sb, ["grep", "-E", "^(NoNewPrivs|Seccomp):", "/proc/self/status"]);
      expect(status.out).toMatch(/NoNewPrivs:\s+1/);
      expect(status.out).toMatch(/Seccomp:\s+2/);
      const uid = await run(sb, ["sh", "-c", "echo $(id -u) $(cat /proc/self/uid_map) $(cat /proc/self/gid_map)"]);
      // Root inside is the first id of the sandbox's own block of 65,536 host ids, of no host account.
      const [, hostUid, gidBase] = /^0 +0 +(\d+) +65536 +0 +(\d+) +65536$/.exec(uid.out.trim()) ?? [];
      expect(Number(hostUid)).toBeGreaterThanOrEqual(2 ** 31);
      expect(Number(hostUid) % 65_536).toBe(0);
      expect(gidBase).toBe(hostUid);
      // No raw inet socket (NET_RAW is not granted), no device node (MKNOD neither).
      const raw = await run(
        sb,
        py(`import socket
try:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    print("raw socket")
except PermissionError as e:
    print("refused", e.errno)`),
      );
      expect(raw.out).toBe("refused 1\n");
      const mknod = await run(sb, ["sh", "-c", "mknod /tmp/null c 1 3 2>&1; echo rc=$?"]);
      expect(mknod.out).toMatch(/Operation not permitted[\s\S]*rc=1/);
      const mount = await run(sb, ["sh", "-c", "mount -t tmpfs none /mnt 2>&1; echo rc=$?"]);
      expect(mount.out).not.toMatch(/rc=0/);
      const unshare = await run(sb, ["sh", "-c", "unshare -U -r true 2>&1; echo rc=$?"]);
      expect(unshare.out).not.toMatch(/rc=0/);
      for (const [name, nr, args] of [
        ["unshare", 272, "0x10000000"],
        ["setns", 308, "0, 0"],
        ["ptrace", 101, "16, 1, 0, 0"],
        ["bpf", 321, "0, 0, 0"],
        ["perf_event_open", 298, "0, 0, -1, -1, 0"],
        ["keyctl", 250, "0"],
        ["io_uring_setup", 425, "1, 0"],
        ["open_tree", 428, "-100, 0, 1"],
        ["mount_setattr", 442, "-100, 0, 0, 0, 0"],
        ["userfaultfd", 323, "0"],
        ["open_by_handle_at", 304, "0, 0, 0"],
        ["kexec_load", 246, "0, 0, 0, 0"],
        ["init_module", 175, "0, 0, 0"],
      ] as const) {
        const r = await run(sb, syscall(name, nr, args));
        expect(r.out, name).toMatch(new RegExp(`^${name} -1 Operation not permitted`));
      }
      const clone = await run(
        sb,
        py(`import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
r = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)
print("clone", r, os.strerror(ctypes.get_errno()))`),
      );
      expect(clone.out).toMatch(/^clone -1 Operation not permitted/);
    });

    it("cannot create vsock, packet (also as inet SOCK_PACKET), alg or key sockets (EAFNOSUPPORT); unix, inet, inet6 and netlink route still work", async () => {
      await using sb = await client.sandboxes.create();
      const probe = [
        "import errno, socket",
        "def attempt(name, make):",
        "    try:",
        "        make().close(); print(name, 'created')",
        "    except OSError as e:",
        "        print(name, errno.errorcode.get(e.errno, e.errno))",
        // AF_VSOCK is not confined by the network namespace: it reaches the hypervisor.
        "for name, family, kind in [('vsock', 40, socket.SOCK_STREAM), ('packet', 17, socket.SOCK_RAW),",
        "                           ('alg', 38, socket.SOCK_SEQPACKET), ('key', 15, socket.SOCK_RAW), ('can', 29, socket.SOCK_RAW)]:",
        "    attempt(name, lambda: socket.socket(family, kind))",
        "    attempt(name + '-pair', lambda: socket.socketpair(family, kind)[0])",
        "for name, family in [('unix', socket.AF_UNIX), ('inet', socket.AF_INET), ('inet6', socket.AF_INET6)]:",
        "    attempt(name, lambda: socket.socket(family, socket.SOCK_STREAM))",
        "attempt('unix-pair', lambda: socket.socketpair()[0])",
        "attempt('netlink-route', lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0))",
        // (AF_INET, SOCK_PACKET=10) is turned into a packet socket by the kernel after the family check.
        "attempt('inet-sock-packet', lambda: socket.socket(socket.AF_INET, 10, 0x0300))",
        "attempt('inet-sock-packet-nonblock', lambda: socket.socket(socket.AF_INET, 10 | socket.SOCK_NONBLOCK, 0x0300))",
        "print('interfaces', sorted(name for _, name in socket.if_nameindex()))",
      ].join("\n");
      const { out } = await run(sb, py(probe));
      for (const name of ["vsock", "packet", "alg", "key", "can"]) {
        expect(out).toContain(`${name} EAFNOSUPPORT`);
        expect(out).toContain(`${name}-pair EAFNOSUPPORT`);
      }
      expect(out).toContain("inet-sock-packet EAFNOSUPPORT");
      expect(out).toContain("inet-sock-packet-nonblock EAFNOSUPPORT");
      for (const name of ["unix", "inet", "inet6", "unix-pair", "netlink-route"])
        expect(out).toContain(`${name} created`);
      expect(out).toContain("interfaces ['eth0', 'lo']");
    });

    it("cannot reach a cgroup release_agent", async () => {
      await using sb = await client.sandboxes.create();
      const { out } = await run(sb, [
        "sh",
        "-c",
        "ls /sys/fs/cgroup 2>&1; echo x > /sys/fs/cgroup/release_agent 2>&1; mkdir -p /tmp/cg && mount -t cgroup -o memory cgroup /tmp/cg 2>&1; echo rc=$?",
      ]);
      expect(out).not.toMatch(/rc=0/);
      expect(out).toMatch(/No such file|Read-only|Permission denied|not permitted/);
    });

    it("a fork bomb hits the pids limit while the server and a neighbour keep serving", async () => {
      await using bomb = await client.sandboxes.create();
      await using neighbour = await client.sandboxes.create();
      const p = await bomb.exec(
        ["sh", "-c", "i=0; while [ $i -lt 2000 ]; do sleep 20 & i=$((i+1)); done 2>/dev/null; echo spawned"],
        { timeoutMs: 60_000 },
      );
      const meanwhile = await run(neighbour, ["echo", "still serving"]);
      expect(meanwhile.out).toBe("still serving\n");
      const count = await run(neighbour, ["true"]);
      expect(count.code).toBe(0);
      // The workload's cgroup's own counter, read on the host: never above the sandbox's pids
      // limit. (Its parent, the sandbox's, has room beyond it for the agent's threads.)
      const parent = existsSync("/sys/fs/cgroup/cgroup.controllers") ? "/sys/fs/cgroup/sbx" : "/sys/fs/cgroup/pids/sbx";
      // Named <data dir tag>-<sandbox id>.
      const cgroup = `${parent}/${readdirSync(parent).find((name) => name.endsWith(`-${bomb.id}`))}`;
      const max = Number(readFileSync(`${cgroup}/work/pids.max`, "utf8"));
      expect(max).toBe(512 + 1); // and the agent's spawner thread
      await p.wait();
      const current = Number(readFileSync(`${cgroup}/work/pids.current`, "utf8"));
      expect(current).toBeGreaterThan(400);
      expect(current).toBeLessThanOrEqual(max);
      expect(Number(readFileSync(`${cgroup}/pids.current`, "utf8"))).toBeLessThan(max + AGENT_PIDS_ROOM);
    });

    it("the agent's control pipes are out of reach, and garbage or forged events would not take the server down", async () => {
      await using sb = await client.sandboxes.create();
      await using neighbour = await client.sandboxes.create();
      // Unlinked once the agent holds them: nothing in the sandbox can open them.
      expect((await run(sb, ["ls", "-A", "/.sbx"])).out.split("\n").filter(Boolean).sort()).toEqual([
        "agent",
        "resolv.conf",
      ]);
      // Were they reachable (sandboxed code runs as the agent's user), this is what it could write.
      const script = [
        'printf \'not json{\\n[]\\nnull\\n{"id":"w1","watch":{"events":[{"type":"x"}]}}\\n\' > /.sbx/events',
        'printf \'{"id":"c999","file":{"error":7}}\\n{"id":{},"started":{"pid":1}}\\n{"id":"1","started":{"pid":1,"stdoutFd":2}}\\n\' > /.sbx/events',
        "head -c 40000000 /dev/zero | tr '\\0' x > /.sbx/events",
        "echo > /.sbx/events",
        "echo written",
      ].join("; ");
      const result = await run(sb, ["sh", "-c", script]);
      expect(result.out).toContain("written");
      // The server, the sandbox and its neighbour all keep serving, files included.
      expect((await run(sb, ["echo", "alive"])).out).toBe("alive\n");
      await sb.filesystem.writeText("still fine", "/after.txt");
      expect(await sb.filesystem.readText("/after.txt")).toBe("still fine");
      expect((await run(neighbour, ["echo", "neighbour alive"])).out).toBe("neighbour alive\n");
    });

    it("sandboxed code cannot take over its agent (ptrace, /proc/1/mem, /proc/1/fd)", async () => {
      await using sb = await client.sandboxes.create();
      // The agent (pid 1) hands the server open files; code with its uid must not reach them
      // (listing /proc/1/fd shows numbers only; opening or reading one is what matters).
      const probe = [
        "import os",
        "for what, f in [('mem', lambda: open('/proc/1/mem', 'r+b')), ('fd', lambda: open('/proc/1/fd/0', 'rb')),",
        "                ('fd0', lambda: os.readlink('/proc/1/fd/0')), ('environ', lambda: open('/proc/1/environ', 'rb').read())]:",
        "    try:",
        "        f(); print(what, 'open')",
        "    except OSError as e:",
        "        print(what, 'refused', e.errno)",
        "import ctypes",
        "libc = ctypes.CDLL(None, use_errno=True)",
        "print('ptrace', 'refused' if libc.ptrace(16, 1, 0, 0) != 0 else 'attached')", // PTRACE_ATTACH
      ].join("\n");
      const { out } = await run(sb, py(probe));
      expect(out).toContain("mem refused");
      expect(out).toContain("fd refused");
      expect(out).toContain("fd0 refused");
      expect(out).toContain("environ refused");
      expect(out).toContain("ptrace refused");
      expect(out).not.toMatch(/ open|attached/);
      // Files still move, through the files the agent opens.
      await sb.filesystem.writeText("through the agent", "/check.txt");
      expect(await sb.filesystem.readText("/check.txt")).toBe("through the agent");
    });

    it("/.sbx is the server's: sandboxed code cannot plant, swap or remove anything there", async () => {
      await using sb = await client.sandboxes.create();
      const probe = [
        "ln -s /etc /.sbx/ctl",
        "mv /.sbx/agent /.sbx/q",
        "rm /.sbx/agent",
        "cp /bin/true /.sbx/agent",
        "touch /.sbx/planted",
        "mkdir /.sbx/pool",
      ]
        .map((cmd) => `${cmd} 2>/dev/null && echo "done: ${cmd}" || echo "refused: ${cmd}"`)
        .join("; ");
      const { out } = await run(sb, ["sh", "-c", probe]);
      expect(out).not.toContain("done:");
      expect(out.match(/refused:/g)).toHaveLength(6);
      // Processes still start (their FIFOs are made and opened where the sandbox cannot reach).
      expect((await run(sb, ["echo", "still runs"])).out).toBe("still runs\n");
    });

    // Names only: processes of one sandbox share a uid, so a running command's stdio stays
    // reachable through /proc/<pid>/fd (see the server README's limits).
    it("a command's stdio are anonymous pipes: no name in the sandbox leads to them", async () => {
      await using sb = await client.sandboxes.create();
      const { out } = await run(sb, [
        "sh",
        "-c",
        "readlink /proc/self/fd/0 /proc/self/fd/1 /proc/self/fd/2; ls -A /.sbx",
      ]);
      expect(out).toMatch(/^pipe:\[\d+\]\npipe:\[\d+\]\npipe:\[\d+\]\nagent\nresolv\.conf\n$/);
      for (let i = 0; i < 8; i++) {
        const later = await sb.exec(["sh", "-c", `echo out-${i}; echo err-${i} >&2; head -c 5`]);
        await later.stdin.write("input");
        await later.stdin.close();
        const [out, err, code] = await Promise.all([later.stdout.readText(), later.stderr.readText(), later.wait()]);
        expect({ out, err, code }).toEqual({ out: `out-${i}\ninput`, err: `err-${i}\n`, code: 0 });
      }
      // An exec that fails still says why (written into its pipe before the agent lets go).
      const missing = await sb.exec(["/no/such/program"]);
      const [why, code] = await Promise.all([missing.stderr.readText(), missing.wait()]);
      expect(code).toBe(127);
      expect(why).toContain("sbx: cannot run /no/such/program");
    });

    it("sandboxed processes inherit no descriptors beyond stdio", async () => {
      await using sb = await client.sandboxes.create();
      const { out } = await run(sb, py("import os; print(sorted(int(f) for f in os.listdir('/proc/self/fd')))"));
      // 0-2, and the descriptor listing /proc/self/fd itself.
      expect(JSON.parse(out)).toEqual([0, 1, 2, 3]);
    });

    it("files on /proc and /sys are not moved through the files API (the server opens as host root)", async () => {
      await using sb = await client.sandboxes.create();
      await run(sb, ["ln", "-s", "/proc/kallsyms", "/tmp/report.txt"]);
      for (const path of ["/proc/kallsyms", "/tmp/report.txt", "/proc/self/status"]) {
        const error = await sb.filesystem.readBytes(path).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error, path).toBeInstanceOf(SandboxFilesystemPermissionError);
        expect(String((error as Error).message)).toContain(path);
      }
      // Inside, the sandbox reads what its own credentials allow.
      expect((await run(sb, ["head", "-c", "0", "/proc/self/status"])).code).toBe(0);
    });

    it("a memory bomb is OOM-killed (137) and the server keeps serving", async () => {
      await using sb = await client.sandboxes.create({ memoryMiB: 64 });
      const p = await sb.exec(py("a = bytearray(1024 * 1024 * 1024); print('allocated')"));
      expect(await p.wait()).toBe(137);
      expect(await p.stdout.readText()).not.toContain("allocated");
      expect((await run(sb, ["echo", "alive"])).out).toBe("alive\n");
    });

    it("leaves no process behind after terminate, setsid daemons included", async () => {
      const marker = `daemon${Date.now()}`;
      const sb = await client.sandboxes.create();
      await run(sb, [
        "bash",
        "-c",
        `setsid bash -c 'exec -a ${marker} sleep 300' >/dev/null 2>&1 < /dev/null & echo started`,
      ]);
      await run(sb, ["bash", "-c", `(bash -c 'exec -a ${marker} sleep 300' >/dev/null 2>&1 &) ; echo double-forked`]);
      // "[d]aemon…" matches the daemons but not this shell's own command line.
      const pattern = `[${marker[0]}]${marker.slice(1)}`;
      const before = execFileSync("sh", ["-c", `pgrep -f '${pattern}' | wc -l`])
        .toString()
        .trim();
      expect(Number(before)).toBe(2);
      await sb.terminate({ wait: true });
      for (let i = 0; i < 50; i++) {
        const left = execFileSync("sh", ["-c", `pgrep -f '${pattern}' | wc -l`])
          .toString()
          .trim();
        if (left === "0") return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error("sandbox processes survived terminate");
    });
  });
}
