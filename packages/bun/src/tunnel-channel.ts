/**
 * `sb.connect` / `sb.tunnel`'s channel to the server's tunnel route for Bun
 * (`ClientDefaults.tunnelChannel`): a plain HTTP/1.1 upgrade to `sbx.tunnel.v1` over Bun's
 * `node:net` / `node:tls`, after which the socket carries the frames as they are: no WebSocket
 * masking of every byte sent, which the server would have to undo byte by byte (see @sbx/node's
 * tunnel-channel.ts). Measured against Bun's own WebSocket through the same tunnel, it about
 * doubled the download rate and raised the upload rate by a third (BENCHMARKS.md, "Tunnels:
 * sb.tunnel").
 */
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { AbortedError, ConnectionError } from "@sbx/core";
import { type OpenTunnelChannel, TUNNEL_PROTOCOL } from "@sbx/core/adapter";

/** Bytes queued on the socket past which writers wait for its drain. */
const HIGH_WATER = 1024 * 1024;
/** The longest answer head read before giving up on it. */
const MAX_HEAD_BYTES = 16 * 1024;

export const bunTunnelChannel: OpenTunnelChannel = (request, events) =>
  new Promise((resolve, reject) => {
    const { signal } = request;
    if (signal?.aborted) return reject(new AbortedError("the operation was aborted", { cause: signal.reason }));
    const url = new URL(request.url);
    const host = url.hostname.replace(/^\[|\]$/g, "");
    const secure = url.protocol === "https:";
    const port = Number(url.port || (secure ? 443 : 80));
    const socket: Socket = secure ? tlsConnect({ host, port, servername: host }) : netConnect({ host, port });
    socket.setNoDelay(true);
    let settled = false;
    let closedByUs = false;
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener("abort", onAbort);
      socket.destroy();
      reject(error);
    };
    const onAbort = () => fail(new AbortedError("the operation was aborted", { cause: signal?.reason }));
    signal?.addEventListener("abort", onAbort, { once: true });
    let head = Buffer.alloc(0);
    const onHead = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf("\r\n\r\n");
      if (end === -1) {
        if (head.length > MAX_HEAD_BYTES) fail(new ConnectionError(`${request.url}: the server's answer has no end`));
        return;
      }
      const status = head.toString("latin1", 0, head.indexOf("\r\n"));
      if (!/^HTTP\/1\.1 101 /.test(status)) {
        return fail(
          new ConnectionError(
            `${request.url}: the server answered "${status}" to the tunnel upgrade; is the endpoint an sbx server that serves tunnels?`,
          ),
        );
      }
      settled = true;
      signal?.removeEventListener("abort", onAbort);
      socket.off("data", onHead);
      socket.on("data", (bytes: Buffer) => events.bytes(bytes));
      let draining: Promise<void> | undefined;
      resolve({
        keepsParts: true,
        send(parts) {
          if (socket.destroyed || socket.writableEnded) return;
          socket.cork();
          for (const part of parts) socket.write(part);
          socket.uncork();
        },
        drained() {
          if (socket.writableLength < HIGH_WATER || socket.destroyed) return undefined;
          draining ??= new Promise<void>((done) => {
            const finish = () => {
              socket.off("drain", finish);
              socket.off("close", finish);
              draining = undefined;
              done();
            };
            socket.on("drain", finish);
            socket.on("close", finish);
          });
          return draining;
        },
        close() {
          closedByUs = true;
          socket.end();
          setTimeout(() => socket.destroy(), 1000).unref();
        },
      });
      if (head.length > end + 4) events.bytes(head.subarray(end + 4));
    };
    socket.on("data", onHead);
    socket.on("error", (error) => fail(new ConnectionError(`${request.url}: ${error.message}`, { cause: error })));
    socket.on("close", () => {
      if (!settled)
        return fail(new ConnectionError(`${request.url}: the server closed the connection before answering`));
      if (!closedByUs) events.closed("the server closed the connection");
    });
    socket.write(
      `GET ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\nconnection: Upgrade\r\n` +
        `upgrade: ${TUNNEL_PROTOCOL}\r\n${request.token ? `authorization: Bearer ${request.token}\r\n` : ""}\r\n`,
    );
  });
