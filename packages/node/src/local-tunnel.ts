/**
 * `sb.tunnel`'s local listener for Node (`ClientDefaults.localTunnel`): node:net on 127.0.0.1,
 * each accepted socket as web byte streams (half-open allowed, so a client that ends its side
 * still gets the rest of the answer); a reset is a TCP RST. The streams are core's
 * `streamSocketStreams` (the socket's own buffers handed on, not `Duplex.toWeb`'s copies).
 */
import { createServer, type Socket } from "node:net";
import { type ListenLocal, type LocalConnection, streamSocketStreams } from "@sbx/core/adapter";

/** Bytes read ahead of the tunnel before the socket is paused. */
const READ_AHEAD = 256 * 1024;

export const nodeListenLocal: ListenLocal = async (port, accept) => {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    accept(connectionOf(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  return {
    port: typeof address === "object" && address ? address.port : port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
};

function connectionOf(socket: Socket): LocalConnection {
  return { ...streamSocketStreams(socket, READ_AHEAD), reset: () => socket.resetAndDestroy() };
}
