/**
 * `sb.tunnel`'s local listener for Node (`ClientDefaults.localTunnel`): node:net on 127.0.0.1,
 * each accepted socket as web byte streams (half-open allowed, so a client that ends its side
 * still gets the rest of the answer); a reset is a TCP RST. The streams are made here rather
 * than with `Duplex.toWeb`, which copies every chunk read: the socket's own buffers are handed
 * on, reading pauses while the tunnel does not take them, and a write waits only for the
 * socket's drain.
 */
import { createServer, type Socket } from "node:net";
import type { ListenLocal, LocalConnection } from "@sbx/core/adapter";

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
  let failure: Error | undefined;
  const closed = () => failure ?? new Error("the local connection is closed");
  const readable = new ReadableStream<Uint8Array>(
    {
      start(controller) {
        socket.on("data", (chunk: Buffer) => {
          controller.enqueue(chunk);
          if ((controller.desiredSize ?? 0) <= 0) socket.pause();
        });
        socket.on("end", () => {
          try {
            controller.close();
          } catch {
            // already errored
          }
        });
        socket.on("error", (error) => {
          failure = error;
        });
        // Destroyed (reset, or after an error) before its end: the readable errors too.
        socket.on("close", () => {
          try {
            controller.error(closed());
          } catch {
            // already closed or errored
          }
        });
        socket.pause();
      },
      pull() {
        socket.resume();
      },
      cancel() {
        socket.destroy();
      },
    },
    { highWaterMark: READ_AHEAD, size: (chunk) => chunk.byteLength },
  );
  const writable = new WritableStream<Uint8Array>({
    write: (chunk) =>
      new Promise<void>((resolve, reject) => {
        if (socket.destroyed || socket.writableEnded) return reject(closed());
        if (socket.write(chunk)) return resolve();
        const settle = () => {
          socket.off("drain", settle);
          socket.off("close", settle);
          if (socket.destroyed) reject(closed());
          else resolve();
        };
        socket.on("drain", settle);
        socket.on("close", settle);
      }),
    close: () =>
      new Promise<void>((resolve, reject) => {
        if (socket.destroyed) return reject(closed());
        socket.end(() => resolve());
      }),
    abort() {
      socket.destroy();
    },
  });
  return { readable, writable, reset: () => socket.resetAndDestroy() };
}
