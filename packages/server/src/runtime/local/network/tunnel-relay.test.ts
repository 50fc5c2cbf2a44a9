// The tunnel relay for real (the agent binary's `relay`, as root), in front of apps on loopback
// (no sandbox needed: it connects to whatever address it is given): it serves tunnels out of
// this process, with HTTP/1.x requests stripped of sbx's credentials; closing a tunnel ends its
// connections before the close is answered; killed unasked, it comes back on the same ports;
// it holds no capability, and it dies with the process that started it.
import { execFileSync, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { type AddressInfo, connect, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dataHead, endFrame, type MuxControlFrame, MuxFrameReader, MuxFrameType, openFrame } from "@sbx/proto";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { realServerAvailable } from "../../../test-support.js";
import { packagedAgent } from "../agent-binary.js";
import { TunnelRelay } from "./tunnel-relay.js";

const available = await realServerAvailable("tunnel relay tests");

/** Resolves with all that comes back on a connection to `port` after `text` is sent and the sending side ended. */
function roundTrip(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    let got = "";
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => {
      got += d;
    });
    socket.on("end", () => resolve(got));
    socket.on("error", reject);
    socket.end(text);
  });
}

/** Whether `pid` runs (a zombie does not). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

/** The pids of this process's relays. */
function relayPids(): number[] {
  try {
    return execFileSync("pgrep", ["-P", String(process.pid), "-f", "relay --parent"], { encoding: "utf8" })
      .trim()
      .split("\n")
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

describe.runIf(available)("the tunnel relay", () => {
  const logged: string[] = [];
  const relay = new TunnelRelay({
    agent: async () => packagedAgent() as string,
    log: (message, fields) => logged.push(`${message} ${JSON.stringify(fields ?? {})}`),
  });
  let app: Server;
  let echo: Server;
  const port = (s: Server) => (s.address() as AddressInfo).port;
  beforeAll(async () => {
    // An HTTP app answering with what it saw of each request.
    app = createHttpServer((req, res) => {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ url: req.url, headers: req.headers }));
    });
    echo = createServer({ allowHalfOpen: true }, (socket) => socket.pipe(socket));
    await Promise.all([app, echo].map((s) => new Promise<void>((r) => s.listen(0, "127.0.0.1", r))));
  });
  afterAll(() => {
    relay.stop();
    app.close();
    echo.close();
  });
  let opened: { sandboxId: string; port: number }[] = [];
  afterEach(async () => {
    for (const t of opened) await relay.close(t.sandboxId, t.port);
    opened = [];
  });
  const open = async (sandboxId: string, target: Server, tunnelPort = 8000, host = "127.0.0.1") => {
    const tunnel = await relay.open({ sandboxId, port: tunnelPort, host, target: `127.0.0.1:${port(target)}` });
    opened.push({ sandboxId, port: tunnelPort });
    return tunnel;
  };

  it("serves a tunnel from its own process: HTTP without sbx's credentials, anything else as it is", async () => {
    const tunnel = await open("sb-a", app);
    expect(tunnel.host).toBe("127.0.0.1");
    // The listener is the relay's, not this process's.
    const listening = execFileSync("ss", ["-Htlnp", `sport = :${tunnel.port}`], { encoding: "utf8" });
    expect(listening).toMatch(/sbx-agent/);
    expect(listening).not.toMatch(new RegExp(`pid=${process.pid},`));
    const answer = await fetch(`http://127.0.0.1:${tunnel.port}/p?a=1&sbx_token=t`, {
      headers: { cookie: "sbx_sb-b_8080=stolen; app=kept", "x-verified-user-data": '{"user":"mallory"}' },
    });
    const seen = (await answer.json()) as { url: string; headers: Record<string, string> };
    expect(seen.url).toBe("/p?a=1");
    expect(seen.headers.cookie).toBe("app=kept");
    expect(seen.headers["x-verified-user-data"]).toBeUndefined();
    const raw = await open("sb-a", echo, 7000);
    const text = "\x00not HTTP\n".repeat(10_000);
    expect(await roundTrip(raw.port, text)).toBe(text);
  });

  it("serves a handed-over tunnel-route connection: READY once this process let go, streams to the sandbox's address, GOAWAY when the sandbox is closed", async () => {
    // A listener standing in for the server's: its accepted socket is what gets handed over.
    const front = createServer();
    await new Promise<void>((r) => front.listen(0, "127.0.0.1", r));
    const accepted = new Promise<import("node:net").Socket>((r) => front.once("connection", r));
    const client = connect({ host: "127.0.0.1", port: port(front) });
    const frames: MuxControlFrame[] = [];
    let echoed = "";
    let wake = () => {};
    const reader = new MuxFrameReader({
      data: (_stream, piece) => {
        echoed += Buffer.from(piece).toString("latin1");
        wake();
      },
      control: (frame) => {
        frames.push(frame);
        wake();
      },
    });
    client.on("data", (chunk: Buffer) => reader.push(chunk));
    client.on("error", () => {});
    const until = async (done: () => boolean) => {
      while (!done()) await new Promise<void>((r) => (wake = r));
    };
    const serverSide = await accepted;
    const serverSideClosed = new Promise<void>((r) => serverSide.once("close", () => r()));
    await relay.adopt({ sandboxId: "sb-m", address: "127.0.0.1" }, serverSide);
    // This process's copy is gone (as any closed socket: its server's count too); the relay's serves.
    await serverSideClosed;
    await until(() => frames.length > 0);
    expect(frames[0]?.type).toBe(MuxFrameType.ready);
    client.write(openFrame(1, port(echo)));
    await until(() => frames.some((f) => f.type === MuxFrameType.opened));
    const text = "through the relay\n".repeat(1000);
    client.write(Buffer.concat([dataHead(1, text.length), Buffer.from(text, "latin1"), endFrame(1)]));
    await until(() => frames.some((f) => f.type === MuxFrameType.end));
    expect(echoed).toBe(text);
    // The front listener closes although a connection it accepted lives on in the relay.
    await new Promise<void>((r) => front.close(() => r()));
    // The sandbox goes: its connection ends with GOAWAY "notRunning" before the close is answered.
    client.write(openFrame(2, port(echo)));
    await until(() => frames.filter((f) => f.type === MuxFrameType.opened).length === 2);
    const clientClosed = new Promise<void>((r) => client.once("close", () => r()));
    await relay.close("sb-m");
    await until(() => frames.some((f) => f.type === MuxFrameType.goaway));
    const goaway = frames.find((f) => f.type === MuxFrameType.goaway) as { code?: string; reason: string };
    expect(goaway.code).toBe("notRunning");
    expect(goaway.reason).toBe("sandbox sb-m has finished");
    await clientClosed;
  });

  it("holds no capability and keeps root's uid; a listen host is resolved before it gets it", async () => {
    const tunnel = await open("sb-c", app, 8000, "localhost"); // (resolved here, not there)
    expect(tunnel.host).toBe("127.0.0.1");
    const [pid] = relayPids();
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    expect(status).toMatch(/^Uid:\s+0\s/m);
    for (const set of ["CapInh", "CapPrm", "CapEff", "CapAmb"]) {
      expect(status).toMatch(new RegExp(`^${set}:\\s+0+$`, "m"));
    }
    expect(status).toMatch(/^NoNewPrivs:\s+1$/m);
    // (Landlock itself: agent/landlock_test.go; here, that the relay found it.)
    expect(logged.join("\n")).not.toMatch(/no Landlock/);
  });

  it("closing a tunnel ends its connections before the close is answered, and its listener", async () => {
    const tunnel = await relay.open({
      sandboxId: "sb-d",
      port: 8000,
      host: "127.0.0.1",
      target: `127.0.0.1:${port(echo)}`,
    });
    const socket = connect({ host: "127.0.0.1", port: tunnel.port });
    const ended = new Promise<void>((resolve) => socket.on("close", () => resolve()));
    socket.on("error", () => {});
    socket.write("\x01hello"); // (not HTTP: piped)
    await new Promise((r) => socket.once("data", r));
    let closed = false;
    void ended.then(() => {
      closed = true;
    });
    await relay.close("sb-d");
    await new Promise((r) => setTimeout(r, 50)); // (the close event's own turn)
    expect(closed).toBe(true);
    await expect(roundTrip(tunnel.port, "x")).rejects.toThrow(/ECONNREFUSED/);
  });

  it("killed unasked, it comes back with its tunnels on the same ports", async () => {
    const tunnel = await open("sb-e", echo);
    const [pid] = relayPids();
    process.kill(pid as number, "SIGKILL");
    await vi.waitFor(
      async () => {
        expect(alive(pid as number)).toBe(false);
        expect(await roundTrip(tunnel.port, "\x02again")).toBe("\x02again");
      },
      { timeout: 10_000, interval: 100 },
    );
    expect(logged.join("\n")).toMatch(/tunnel relay ended unasked/);
  });

  it("dies with the process that started it", async () => {
    const script = join(tmpdir(), `sbx-relay-parent-${process.pid}.mjs`);
    writeFileSync(
      script,
      `import { spawn } from "node:child_process";
const relay = spawn(${JSON.stringify(packagedAgent())}, ["relay", "--parent", String(process.pid)], { stdio: ["pipe", "pipe", "inherit"] });
relay.stdout.once("data", (line) => process.stdout.write(relay.pid + "\\n"));
relay.stdin.write(JSON.stringify({ id: 1, op: "open", sandbox: "sb-x", port: 1, listen: "127.0.0.1", target: "127.0.0.1:1" }) + "\\n");
setInterval(() => {}, 1000);
`,
    );
    const parent = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "inherit"] });
    const relayPid = await new Promise<number>((resolve) =>
      parent.stdout.once("data", (d) => resolve(Number(String(d).trim()))),
    );
    expect(relayPid).toBeGreaterThan(0);
    expect(alive(relayPid)).toBe(true);
    parent.kill("SIGKILL");
    await vi.waitFor(
      () => {
        expect(alive(relayPid)).toBe(false);
      },
      { timeout: 10_000, interval: 50 },
    );
  });
});
