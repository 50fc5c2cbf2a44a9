// The tunnel channel over a node:net socket (what @sbx/node and @sbx/bun hand it after the
// upgrade), against a plain TCP peer standing in for the server: bytes both ways, back-pressure,
// and which ends of the connection it reports.
import { once } from "node:events";
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { streamSocketChannel } from "./stream-socket-channel.js";

const servers: Server[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) server.close();
});

/** A connected pair: the client socket and the server's side of it. */
async function socketPair(): Promise<{ client: Socket; peer: Socket }> {
  const server = createServer();
  servers.push(server);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  const accepted = once(server, "connection");
  const client = connect({ host: "127.0.0.1", port });
  await once(client, "connect");
  const [peer] = (await accepted) as [Socket];
  return { client, peer };
}

function channelEvents() {
  const received: Uint8Array[] = [];
  const closed: string[] = [];
  return {
    received,
    closed,
    events: { bytes: (chunk: Uint8Array) => received.push(chunk), closed: (why: string) => closed.push(why) },
  };
}

describe("streamSocketChannel", () => {
  it("carries bytes both ways; the server closing is reported once", async () => {
    const { client, peer } = await socketPair();
    const { received, closed, events } = channelEvents();
    const channel = streamSocketChannel(client, events);
    expect(channel.keepsParts).toBe(true);
    channel.send([new TextEncoder().encode("he"), new TextEncoder().encode("llo")]);
    let heard = "";
    peer.on("data", (chunk: Buffer) => {
      heard += String(chunk);
    });
    while (heard.length < 5) await once(peer, "data");
    const clientClosed = once(client, "close");
    peer.end("back");
    await clientClosed;
    expect(Buffer.concat(received).toString()).toBe("back");
    expect(closed).toEqual(["the server closed the connection"]);
  });

  it("close() ends the connection and reports nothing", async () => {
    const { client, peer } = await socketPair();
    const { closed, events } = channelEvents();
    const channel = streamSocketChannel(client, events);
    peer.resume();
    const clientClosed = once(client, "close");
    channel.close();
    await once(peer, "end");
    peer.end();
    await clientClosed;
    expect(closed).toEqual([]);
    channel.send([new Uint8Array(1)]); // after close: dropped, no throw
  });

  it("drained() waits while a megabyte or more is queued, until the peer reads", async () => {
    const { client, peer } = await socketPair();
    const { events } = channelEvents();
    const channel = streamSocketChannel(client, events);
    expect(channel.drained()).toBeUndefined();
    peer.pause();
    const block = new Uint8Array(256 * 1024);
    while (client.writableLength < 1024 * 1024) channel.send([block]);
    const waiting = channel.drained();
    expect(waiting).toBeInstanceOf(Promise);
    expect(channel.drained()).toBe(waiting);
    peer.resume();
    await waiting;
    expect(client.writableLength).toBeLessThan(1024 * 1024);
    channel.close();
    peer.destroy();
  });

  it("a connection that fails is reported as failed", async () => {
    const { client } = await socketPair();
    const { closed, events } = channelEvents();
    streamSocketChannel(client, events);
    const clientClosed = new Promise((resolve) => client.on("close", resolve));
    client.destroy(new Error("broken"));
    await clientClosed;
    expect(closed).toEqual(["the connection failed"]);
  });
});
