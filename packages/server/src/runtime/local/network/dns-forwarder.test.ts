// The sandboxes' DNS forwarder on its own, on a loopback address of its own: a client that
// pipelines queries over TCP and never reads the answers (each 60 KB, from a stand-in
// resolver) costs the server at most one answer's bytes, and its connection is closed; busy
// sandboxes leave room in the global limits for another.
import { createSocket } from "node:dgram";
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { DnsForwarder } from "./dns-forwarder.js";

const ANSWER_BYTES = 60_000;
/** The query sent, again and again: a header (id 0x1234, RD) and a question for "a." type A. */
const QUERY = Buffer.from([0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x61, 0, 0, 1, 0, 1]);
const framed = (message: Buffer) => Buffer.concat([Buffer.from([message.length >> 8, message.length & 0xff]), message]);

/** A TCP resolver answering every query with ANSWER_BYTES (its id, QR set); counts the queries. */
function startBigResolver(): Promise<{
  server: Server;
  port: number;
  queries: () => number;
  nextQuery: () => Promise<void>;
}> {
  let queries = 0;
  let waiting: (() => void)[] = [];
  const server = createServer((socket) => {
    let buffered = Buffer.alloc(0);
    socket.on("error", () => {});
    socket.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
        const query = buffered.subarray(2, 2 + buffered.readUInt16BE(0));
        buffered = buffered.subarray(2 + query.length);
        queries++;
        for (const wake of waiting) wake();
        waiting = [];
        const answer = Buffer.alloc(ANSWER_BYTES);
        query.copy(answer, 0, 0, 12);
        answer[2] = 0x81;
        socket.write(framed(answer));
      }
    });
  });
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () =>
      resolve({
        server,
        port: (server.address() as { port: number }).port,
        queries: () => queries,
        nextQuery: () => new Promise((wake) => waiting.push(wake)),
      }),
    ),
  );
}

describe("DNS forwarder over TCP", () => {
  // (Root binds port 53 on an address of 127/8 that nothing else of the host uses.)
  const address = `127.53.${process.pid % 250}.${1 + Math.floor(Math.random() * 250)}`;
  let resolver: Awaited<ReturnType<typeof startBigResolver>>;
  let forwarder: DnsForwarder;
  beforeAll(async () => {
    resolver = await startBigResolver();
    forwarder = await DnsForwarder.start({
      address,
      upstreams: [{ address: "127.0.0.1", port: resolver.port, family: 4 }],
      allowed: (source) => source === "127.0.0.1",
      limits: { tcpIdleMs: 500 },
    });
  });
  afterAll(async () => {
    await forwarder?.close();
    resolver?.server.close();
  });

  it("answers a query", async () => {
    const socket = connect({ host: address, port: 53, localAddress: "127.0.0.1" });
    socket.write(framed(QUERY));
    const chunks: Buffer[] = [];
    for await (const chunk of socket) {
      chunks.push(chunk as Buffer);
      if (Buffer.concat(chunks).length >= 2 + ANSWER_BYTES) break;
    }
    socket.destroy();
    const answer = Buffer.concat(chunks);
    expect(answer.readUInt16BE(0)).toBe(ANSWER_BYTES);
    expect(answer.subarray(2, 4)).toEqual(QUERY.subarray(0, 2));
  });

  it("reads no query while an answer waits to be sent: a client that never reads costs one answer, then is closed", async () => {
    await vi.waitFor(() => expect(forwarder.stats.tcpConnections).toBe(0));
    const before = resolver.queries();
    const socket: Socket = connect({ host: address, port: 53, localAddress: "127.0.0.1" });
    socket.pause(); // (never reads: the kernel's buffers fill, then the forwarder's would)
    socket.on("error", () => {});
    await vi.waitFor(() => expect(forwarder.stats.tcpConnections).toBe(1));
    // (Closed by the forwarder: the client, paused, sees no end.)
    const closed = vi
      .waitFor(() => expect(forwarder.stats.tcpConnections).toBe(0), { timeout: 50_000, interval: 20 })
      .then(() => "closed" as const);
    // One query after another (each once the last reached the resolver): 400 answers of 60 KB,
    // 24 MB, far more than the kernel's buffers hold.
    let asked = 0;
    while (asked < 400) {
      socket.write(framed(QUERY));
      if ((await Promise.race([resolver.nextQuery().then(() => "asked" as const), closed])) === "closed") break;
      asked++;
    }
    await closed;
    socket.destroy();
    expect(forwarder.stats.maxQueuedBytes).toBeLessThanOrEqual(2 + 65_535);
    expect(resolver.queries() - before).toBeLessThan(400);
  });
});

describe("DNS forwarder's global limits", () => {
  const address = `127.54.${process.pid % 250}.${1 + Math.floor(Math.random() * 250)}`;
  const silent = createSocket("udp4"); // a resolver that never answers: queries stay in flight
  const relayed: Buffer[] = [];
  let forwarder: DnsForwarder;
  beforeAll(async () => {
    silent.on("message", (query) => relayed.push(query));
    await new Promise<void>((resolve) => silent.bind(0, "127.0.0.1", () => resolve()));
    forwarder = await DnsForwarder.start({
      address,
      upstreams: [{ address: "127.0.0.1", port: (silent.address() as { port: number }).port, family: 4 }],
      allowed: (source) => source.startsWith("127.0.1."),
      limits: { inFlight: 64, inFlightPerSource: 16, upstreamTimeoutMs: 60_000 },
    });
  });
  afterAll(async () => {
    await forwarder?.close();
    silent.close();
  });

  it("are shared: sandboxes that fill theirs leave room for another", async () => {
    const clients = [];
    // Four sandboxes, each with as many queries as it may have (4 × 16: the global limit).
    for (let i = 1; i <= 4; i++) {
      const client = createSocket("udp4");
      clients.push(client);
      await new Promise<void>((resolve) => client.bind(0, `127.0.1.${i}`, () => resolve()));
      for (let n = 0; n < 16; n++) client.send(QUERY, 53, address);
      await vi.waitFor(() => expect(forwarder.stats.datagrams).toBe(16 * i));
    }
    // A fifth asks once: its query is relayed.
    const late = createSocket("udp4");
    clients.push(late);
    await new Promise<void>((resolve) => late.bind(0, "127.0.1.5", () => resolve()));
    const marked = Buffer.from(QUERY);
    marked.writeUInt16BE(0xbeef, 0);
    late.send(marked, 53, address);
    await vi.waitFor(() => expect(relayed.some((q) => q.readUInt16BE(0) === 0xbeef)).toBe(true), { timeout: 5000 });
    expect(forwarder.stats.inFlight).toBeLessThanOrEqual(64);
    for (const client of clients) client.close();
  });
});
