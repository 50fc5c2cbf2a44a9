/**
 * `sb.connect` / `sb.tunnel`'s channel to the server's tunnel route for Node
 * (`ClientDefaults.tunnelChannel`): a plain HTTP/1.1 upgrade to `sbx.tunnel.v1` (contract in
 * `@sbx/proto`'s port-mux.ts), after which the socket carries the frames as they are.
 *
 * Why not a WebSocket here: RFC 6455 §5.3 has every WebSocket client mask every frame with a
 * fresh, unpredictable key, and Node's built-in WebSocket (undici) does it in JavaScript, one
 * byte at a time, while the server unmasks the same way: measured, that held uploads through a
 * tunnel to a fraction of a loopback copy. A zero key (the `ws` package's `generateMask`
 * option) would skip the work but break that MUST, whose point (§10.3) is that a client's
 * bytes never reach a proxy unmasked; bytes through a tunnel come from any local program,
 * which is that very case. A plain upgrade is no WebSocket at all, so there is nothing to
 * mask: its bytes are what any HTTP/1.1 request body is to such a proxy.
 */
import { request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import type { Socket } from "node:net";
import { AbortedError, ConnectionError } from "@sbx/core";
import type { OpenTunnelChannel } from "@sbx/core/adapter";
import { MUX_PROTOCOL } from "@sbx/proto";

/** Bytes queued on the socket past which writers wait for its drain. */
const HIGH_WATER = 1024 * 1024;

export const nodeTunnelChannel: OpenTunnelChannel = (request, events) =>
  new Promise((resolve, reject) => {
    const { signal } = request;
    if (signal?.aborted) return reject(new AbortedError("the operation was aborted", { cause: signal.reason }));
    const url = new URL(request.url);
    const make = url.protocol === "https:" ? httpsRequest : httpRequest;
    const req = make(url, {
      method: "GET",
      agent: false,
      headers: {
        connection: "Upgrade",
        upgrade: MUX_PROTOCOL,
        ...(request.token ? { authorization: `Bearer ${request.token}` } : {}),
      },
    });
    const onAbort = () => {
      req.destroy();
      reject(new AbortedError("the operation was aborted", { cause: signal?.reason }));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    const settled = () => signal?.removeEventListener("abort", onAbort);
    req.on("upgrade", (_res: IncomingMessage, socket: Socket, head: Buffer) => {
      settled();
      if (signal?.aborted) return socket.destroy();
      socket.setNoDelay(true);
      let closedByUs = false;
      let draining: Promise<void> | undefined;
      socket.on("data", (chunk: Buffer) => events.bytes(chunk));
      socket.on("error", () => {});
      socket.on("close", (hadError) => {
        if (!closedByUs) events.closed(hadError ? "the connection failed" : "the server closed the connection");
      });
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
      if (head.length > 0) events.bytes(head);
    });
    req.on("response", (res: IncomingMessage) => {
      settled();
      res.resume();
      reject(
        new ConnectionError(
          `${request.url}: the server answered ${res.statusCode} to the tunnel upgrade; is the endpoint an sbx server that serves tunnels?`,
        ),
      );
    });
    req.on("error", (error) => {
      settled();
      if (signal?.aborted) return;
      reject(new ConnectionError(`${request.url}: ${error.message}`, { cause: error }));
    });
    req.end();
  });
