/**
 * `sb.tunnel`'s local listener for Node (`ClientDefaults.localTunnel`): node:net on 127.0.0.1,
 * each accepted socket as web byte streams (half-open allowed, so a client that ends its side
 * still gets the rest of the answer).
 */
import { createServer, type Socket } from "node:net";
import { Duplex } from "node:stream";
import type { ListenLocal } from "@sbx/core/adapter";

export const nodeListenLocal: ListenLocal = async (port, accept) => {
  const sockets = new Set<Socket>();
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    const { readable, writable } = Duplex.toWeb(socket);
    accept({
      readable: readable as ReadableStream<Uint8Array>,
      writable: writable as WritableStream<Uint8Array>,
      close: () => socket.destroy(),
    });
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
