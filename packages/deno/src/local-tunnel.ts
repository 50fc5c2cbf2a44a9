/**
 * `sb.tunnel`'s local listener for Deno (`ClientDefaults.localTunnel`): `Deno.listen` on
 * 127.0.0.1 (needs `--allow-net`). Each connection's streams are made here from `read`,
 * `write` and `closeWrite`: a `Deno.Conn`'s own `readable` closes the whole connection at its
 * end, which would cut off the answer to a client that half-closed.
 */
import type { ListenLocal } from "@sbx/core/adapter";
import { type DenoConn, denoGlobal } from "./deno-api.ts";

export const denoListenLocal: ListenLocal = async (port, accept) => {
  const deno = denoGlobal();
  if (!deno) throw new Error("Deno.listen is not available");
  const listener = deno.listen({ hostname: "127.0.0.1", port, transport: "tcp" });
  const open = new Set<DenoConn>();
  const closeConn = (conn: DenoConn) => {
    if (!open.delete(conn)) return;
    try {
      conn.close();
    } catch {
      // already closed by its streams
    }
  };
  void (async () => {
    try {
      for await (const conn of listener) {
        open.add(conn);
        // (Deno cannot send a TCP RST: a reset closes the connection.)
        accept({ ...streamsOf(conn), reset: () => closeConn(conn) });
      }
    } catch {
      // the listener was closed
    }
  })();
  return {
    port: listener.addr.port,
    close: async () => {
      try {
        listener.close();
      } catch {
        // already closed
      }
      for (const conn of [...open]) closeConn(conn);
    },
  };
};

const READ_BYTES = 64 * 1024;

function streamsOf(conn: DenoConn): { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> } {
  const readable = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const buffer = new Uint8Array(READ_BYTES);
      const n = await conn.read(buffer);
      if (n === null) controller.close();
      else controller.enqueue(buffer.subarray(0, n));
    },
    cancel() {
      conn.close();
    },
  });
  const writable = new WritableStream<Uint8Array>({
    async write(chunk) {
      for (let at = 0; at < chunk.byteLength; ) at += await conn.write(chunk.subarray(at));
    },
    close: () => conn.closeWrite(),
    abort() {
      conn.close();
    },
  });
  return { readable, writable };
}
