/**
 * `sb.tunnel`'s local listener for Bun (`ClientDefaults.localTunnel`): `Bun.listen` on
 * 127.0.0.1, half-open allowed. Bun's sockets are callbacks, so each becomes a pair of web
 * streams here: reading pauses while the tunnel does not take what came in, and a write that
 * the socket did not take whole waits for its drain.
 */
import type { ListenLocal, LocalConnection } from "@sbx/core/adapter";
import type { Socket } from "bun";

interface State {
  controller: ReadableStreamDefaultController<Uint8Array> | undefined;
  readEnded: boolean;
  closed: boolean;
  drained: (() => void) | undefined;
}

export const bunListenLocal: ListenLocal = async (port, accept) => {
  const open = new Set<Socket<State>>();
  const listener = Bun.listen<State>({
    hostname: "127.0.0.1",
    port,
    allowHalfOpen: true,
    socket: {
      open(socket) {
        socket.data = { controller: undefined, readEnded: false, closed: false, drained: undefined };
        open.add(socket);
        accept(connectionOf(socket));
      },
      data(socket, data) {
        const controller = socket.data.controller;
        if (!controller || socket.data.readEnded) return;
        controller.enqueue(new Uint8Array(data));
        if ((controller.desiredSize ?? 0) <= 0) socket.pause();
      },
      drain(socket) {
        const drained = socket.data.drained;
        socket.data.drained = undefined;
        drained?.();
      },
      end(socket) {
        endReading(socket.data);
      },
      close(socket) {
        open.delete(socket);
        socket.data.closed = true;
        endReading(socket.data);
        socket.data.drained?.();
      },
      error(socket) {
        socket.terminate();
      },
    },
  });
  return {
    port: listener.port,
    close: async () => {
      listener.stop(true);
      for (const socket of open) socket.terminate();
    },
  };
};

function endReading(state: State): void {
  if (state.readEnded) return;
  state.readEnded = true;
  try {
    state.controller?.close();
  } catch {
    // already closed or errored
  }
}

function connectionOf(socket: Socket<State>): LocalConnection {
  const readable = new ReadableStream<Uint8Array>(
    {
      start(controller) {
        socket.data.controller = controller;
      },
      pull() {
        socket.resume();
      },
      cancel() {
        socket.terminate();
      },
    },
    { highWaterMark: 256 * 1024, size: (chunk) => chunk?.byteLength ?? 0 },
  );
  const writable = new WritableStream<Uint8Array>({
    async write(chunk) {
      let rest = chunk;
      while (rest.byteLength > 0) {
        if (socket.data.closed) throw new Error("the local connection is closed");
        const written = socket.write(rest);
        rest = rest.subarray(Math.max(0, written));
        if (rest.byteLength > 0) {
          await new Promise<void>((resolve) => {
            socket.data.drained = resolve;
          });
        }
      }
    },
    close() {
      if (!socket.data.closed) socket.shutdown();
    },
    abort() {
      socket.terminate();
    },
  });
  return { readable, writable, reset: () => socket.terminate() };
}
