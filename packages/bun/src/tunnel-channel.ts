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
import { AbortedError } from "@sbx/core";
import {
  type OpenTunnelChannel,
  streamSocketChannel,
  TunnelUpgradeAnswer,
  tunnelConnectFailed,
  tunnelUpgrade,
} from "@sbx/core/adapter";

export const bunTunnelChannel: OpenTunnelChannel = (request, events) =>
  new Promise((resolve, reject) => {
    const { signal } = request;
    if (signal?.aborted) return reject(new AbortedError("the operation was aborted", { cause: signal.reason }));
    const upgrade = tunnelUpgrade(new URL(request.url), request.token);
    const { host, port, secure } = upgrade;
    const socket: Socket = secure ? tlsConnect({ host, port, servername: host }) : netConnect({ host, port });
    socket.setNoDelay(true);
    let settled = false;
    const fail = (error: Error) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener("abort", onAbort);
      socket.destroy();
      reject(error);
    };
    const onAbort = () => fail(new AbortedError("the operation was aborted", { cause: signal?.reason }));
    signal?.addEventListener("abort", onAbort, { once: true });
    const answer = new TunnelUpgradeAnswer(request.url);
    const onHead = (chunk: Buffer) => {
      let rest: Uint8Array | undefined;
      try {
        rest = answer.read(chunk);
      } catch (error) {
        return fail(error as Error);
      }
      if (rest === undefined) return;
      settled = true;
      signal?.removeEventListener("abort", onAbort);
      socket.off("data", onHead);
      resolve(streamSocketChannel(socket, events));
      if (rest.byteLength > 0) events.bytes(rest);
    };
    socket.on("data", onHead);
    socket.on("error", (error) => fail(tunnelConnectFailed(request.url, error)));
    socket.on("close", () => {
      if (!settled) fail(answer.closedError());
    });
    socket.write(upgrade.request);
  });
