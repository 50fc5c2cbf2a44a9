// Dropped connections against the real server: a TCP proxy in front of it cuts the
// connection carrying the output at random points (200 per protocol, across runs of 20 MB of
// interleaved stdout/stderr), and a CommandHandle must still deliver every byte exactly once,
// in order, at the right offsets. File uploads and downloads cut the same way resume where
// they stopped and arrive intact.
import { createHash, randomBytes } from "node:crypto";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import * as sdk from "@sbx/node";
import { interleavedOutput, interleavedScript, seededRandom } from "@sbx/testing/conformance";
import { describe, expect, it } from "vitest";
import { realServerAvailable, useTestServer } from "./test-support.js";

const available = await realServerAvailable();

/** A TCP proxy that, while armed, drops a connection after a random number of response bytes. */
class CuttingProxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #budget = 0;
  armed = false;
  cuts = 0;
  /** When set, each response packet is dropped (with its connection) with this probability. */
  dropChance: (() => boolean) | undefined;
  /** When set, a connection is dropped once this many more request bytes have gone through. */
  requestCuts: (() => number) | undefined;
  #requestBudget = 0;
  /** Request bytes passed on to the server. */
  requestBytes = 0;

  constructor(
    readonly target: { host: string; port: number },
    readonly nextBudget: () => number,
  ) {
    this.#server = createServer((client) => this.#accept(client));
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(0, "127.0.0.1", resolve));
    const address = this.#server.address();
    if (address === null || typeof address === "string") throw new Error("proxy has no port");
    return `http://127.0.0.1:${address.port}`;
  }

  arm(): void {
    this.#budget = this.nextBudget();
    this.armed = true;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise((resolve) => this.#server.close(resolve));
  }

  #accept(client: Socket): void {
    const upstream = createConnection(this.target);
    this.#sockets.add(client).add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      this.#sockets.delete(client);
      this.#sockets.delete(upstream);
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    client.on("data", (data: Buffer) => {
      if (this.requestCuts) {
        if (this.#requestBudget <= 0) this.#requestBudget = this.requestCuts();
        if (data.byteLength >= this.#requestBudget) {
          // Part of this request's bytes reach the server, then the connection drops.
          upstream.write(data.subarray(0, this.#requestBudget));
          this.requestBytes += this.#requestBudget;
          this.#requestBudget = 0;
          this.cuts++;
          upstream.end(drop);
          return;
        }
        this.#requestBudget -= data.byteLength;
      }
      this.requestBytes += data.byteLength;
      upstream.write(data);
    });
    upstream.on("data", (data: Buffer) => {
      if (this.dropChance?.()) {
        // The request reached the server and was acted on; its response is lost.
        this.cuts++;
        drop();
        return;
      }
      if (!this.armed || data.byteLength < this.#budget) {
        if (this.armed) this.#budget -= data.byteLength;
        client.write(data);
        return;
      }
      // Deliver part of this packet, then drop the connection mid-stream.
      client.write(data.subarray(0, this.#budget));
      this.cuts++;
      this.#budget = this.nextBudget();
      drop();
    });
  }
}

if (available) {
  describe("real server behind a connection-dropping proxy", () => {
    const server = useTestServer();
    const big = interleavedOutput(20_000_000);

    for (const transport of [
      { label: "raw output stream, Connect over HTTP/1.1", options: { protocol: "connect", httpVersion: "1.1" } },
      {
        label: "ReadOutput over Connect HTTP/2",
        options: { protocol: "connect", httpVersion: "2", rawHttp: false },
      },
    ] as const) {
      it(`${transport.label}: 200 random cuts, every byte once, in order`, async () => {
        const seed = Math.floor(Math.random() * 2 ** 31);
        const why = `(seed ${seed})`;
        const random = seededRandom(seed);
        const url = new URL(server.url);
        // Cut points from 0 to ~1.2 MB of response bytes.
        const proxy = new CuttingProxy({ host: url.hostname, port: Number(url.port) }, () =>
          Math.floor(random() * 1_200_000),
        );
        const endpoint = await proxy.listen();
        const client = new sdk.SandboxClient({ endpoint, token: server.token, ...transport.options });
        try {
          const sb = await client.sandboxes.create();
          for (let run = 0; proxy.cuts < 200 && run < 20; run++) {
            const handle = await sb.run('exec python3 -c "$GENERATOR"', {
              wait: false,
              env: { GENERATOR: interleavedScript(big.lines) },
            });
            proxy.arm();
            const got = { stdout: [] as string[], stderr: [] as string[] };
            const at = { stdout: 0, stderr: 0 };
            for await (const chunk of handle) {
              if (chunk.offset !== at[chunk.stream]) {
                throw new Error(`${chunk.stream} offset ${chunk.offset}, expected ${at[chunk.stream]} ${why}`);
              }
              at[chunk.stream] += Buffer.byteLength(chunk.data);
              got[chunk.stream].push(chunk.data);
            }
            proxy.armed = false;
            expect(got.stdout.join("") === big.stdout, `run ${run}: stdout byte-identical ${why}`).toBe(true);
            expect(got.stderr.join("") === big.stderr, `run ${run}: stderr byte-identical ${why}`).toBe(true);
            const result = await handle.result;
            expect(result.exitCode).toBe(0);
          }
          expect(proxy.cuts, `cuts made ${why}`).toBeGreaterThanOrEqual(200);
          await sb.terminate();
        } finally {
          await client.close();
          await proxy.close();
        }
      }, 600_000);
    }

    it("stdin writes whose responses are lost are applied exactly once", async () => {
      const seed = Math.floor(Math.random() * 2 ** 31);
      const random = seededRandom(seed);
      const url = new URL(server.url);
      const proxy = new CuttingProxy({ host: url.hostname, port: Number(url.port) }, () => 0);
      const endpoint = await proxy.listen();
      const client = new sdk.SandboxClient({ endpoint, token: server.token, protocol: "connect", httpVersion: "1.1" });
      try {
        const sb = await client.sandboxes.create();
        const handle = await sb.run("cat", { wait: false, timeoutMs: 0 });
        proxy.dropChance = () => random() < 0.25;
        let sent = "";
        for (let i = 0; i < 200; i++) {
          const line = `input ${i} ✓\n`;
          await handle.sendInput(line);
          sent += line;
        }
        await handle.closeInput();
        proxy.dropChance = undefined;
        expect(proxy.cuts, `responses dropped (seed ${seed})`).toBeGreaterThan(20);
        const result = await handle.result;
        expect(result.stdout === sent, `stdin applied exactly once, in order (seed ${seed})`).toBe(true);
        await sb.terminate();
      } finally {
        await client.close();
        await proxy.close();
      }
    }, 300_000);

    for (const transport of [
      { label: "raw files route, HTTP/1.1", options: { protocol: "connect", httpVersion: "1.1" } },
      {
        label: "WriteFile/ReadFile over Connect HTTP/2",
        options: { protocol: "connect", httpVersion: "2", rawHttp: false },
      },
    ] as const) {
      it(`${transport.label}: a 48 MiB upload and download cut at random points resume and arrive intact`, async () => {
        const seed = Math.floor(Math.random() * 2 ** 31);
        const why = `(seed ${seed})`;
        const random = seededRandom(seed);
        const url = new URL(server.url);
        const proxy = new CuttingProxy({ host: url.hostname, port: Number(url.port) }, () =>
          Math.floor(random() * 6_000_000),
        );
        const endpoint = await proxy.listen();
        const client = new sdk.SandboxClient({ endpoint, token: server.token, maxRetries: 30, ...transport.options });
        const digest = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");
        try {
          const sb = await client.sandboxes.create();
          const data = randomBytes(48 * 1024 * 1024);
          proxy.requestCuts = () => 1_000_000 + Math.floor(random() * 6_000_000);
          await sb.filesystem.writeBytes(data, "/up/big.bin");
          proxy.requestCuts = undefined;
          const uploadCuts = proxy.cuts;
          expect(uploadCuts, `upload cuts ${why}`).toBeGreaterThanOrEqual(5);
          // Resumed, never restarted: each cut costs at most what was in flight (raw: the server
          // says where it got to; WriteFile: one 4 MiB chunk is sent again).
          const perCut = (transport.options.rawHttp === false ? 4 : 0) * 1024 * 1024 + 2 * 1024 * 1024;
          expect(proxy.requestBytes, `request bytes ${why}`).toBeLessThan(data.byteLength + uploadCuts * perCut);
          expect((await sb.run("sha256sum /up/big.bin")).stdout.split(" ")[0], `upload intact ${why}`).toBe(
            digest(data),
          );
          proxy.arm();
          const back = await sb.filesystem.readBytes("/up/big.bin");
          proxy.armed = false;
          expect(proxy.cuts - uploadCuts, `download cuts ${why}`).toBeGreaterThanOrEqual(5);
          expect(back.byteLength).toBe(data.byteLength);
          expect(digest(back), `download intact ${why}`).toBe(digest(data));
          // No temporary upload files left beside the target.
          expect(await sb.filesystem.listFiles("/up").then((l) => l.map((e) => e.name))).toEqual(["big.bin"]);
          await sb.terminate();
        } finally {
          await client.close();
          await proxy.close();
        }
      }, 300_000);
    }
  });
}
