/**
 * A socket with Node's stream interface (a node:net socket, one side of `duplexPair()`) as a
 * pair of web byte streams, the socket's own buffers handed on (`Duplex.toWeb` copies every
 * chunk read): reading pauses while the reader does not take what came (past `readAhead`
 * bytes), a write waits only for the socket's drain, closing the writable ends the socket
 * (half-close: the other end still gets the rest), and cancelling or aborting destroys it. An
 * error, or a close before the end, errors the readable. No Node import here: the socket is
 * whatever has this shape. Used by @sbx/node's `sb.tunnel` listener and the fake's port dialer.
 */

/** What the streams use of a node:net `Socket` (or a stream `Duplex`). */
export interface StreamSocketEnds {
  readonly destroyed: boolean;
  readonly writableEnded: boolean;
  pause(): unknown;
  resume(): unknown;
  write(bytes: Uint8Array): boolean;
  end(done: () => void): unknown;
  destroy(): unknown;
  on(event: "data", listener: (chunk: Uint8Array) => void): unknown;
  on(event: "error", listener: (error: Error) => void): unknown;
  on(event: "end" | "close" | "drain", listener: () => void): unknown;
  off(event: "close" | "drain", listener: () => void): unknown;
}

export function streamSocketStreams(
  socket: StreamSocketEnds,
  readAhead: number,
): { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> } {
  let failure: Error | undefined;
  const closed = () => failure ?? new Error("the connection is closed");
  const readable = new ReadableStream<Uint8Array>(
    {
      start(controller) {
        socket.on("data", (chunk) => {
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
    { highWaterMark: readAhead, size: (chunk) => chunk.byteLength },
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
  return { readable, writable };
}
