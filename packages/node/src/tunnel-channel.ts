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
import { AbortedError } from "@sbx/core";
import {
  type OpenTunnelChannel,
  streamSocketChannel,
  TUNNEL_PROTOCOL,
  tunnelConnectFailed,
  tunnelUpgradeRefused,
} from "@sbx/core/adapter";

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
        upgrade: TUNNEL_PROTOCOL,
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
      resolve(streamSocketChannel(socket, events));
      if (head.length > 0) events.bytes(head);
    });
    req.on("response", (res: IncomingMessage) => {
      settled();
      res.resume();
      reject(tunnelUpgradeRefused(request.url, `${res.statusCode}`));
    });
    req.on("error", (error) => {
      settled();
      if (signal?.aborted) return;
      reject(tunnelConnectFailed(request.url, error));
    });
    req.end();
  });
