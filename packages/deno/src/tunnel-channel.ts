/**
 * `sb.connect` / `sb.tunnel`'s channel to the server's tunnel route for Deno
 * (`ClientDefaults.tunnelChannel`): a plain HTTP/1.1 upgrade to `sbx.tunnel.v1` over
 * `Deno.connect` / `Deno.connectTls` (`--allow-net` for the endpoint, as for a WebSocket), after
 * which the connection carries the frames as they are: no WebSocket masking of every byte
 * sent, which the server would have to undo byte by byte (see @sbx/node's tunnel-channel.ts).
 */
import { AbortedError, ConnectionError, UnsupportedError } from "@sbx/core";
import {
  type OpenTunnelChannel,
  type TunnelChannel,
  TunnelUpgradeAnswer,
  tunnelConnectFailed,
  tunnelUpgrade,
} from "@sbx/core/adapter";
import { type DenoConn, denoGlobal } from "./deno-api.ts";

/** Bytes queued for the connection past which writers wait. */
const HIGH_WATER = 1024 * 1024;
const READ_BYTES = 64 * 1024;

export const denoTunnelChannel: OpenTunnelChannel = async (request, events) => {
  const deno = denoGlobal();
  if (!deno) throw new UnsupportedError("the Deno tunnel channel needs Deno");
  const { signal } = request;
  const aborted = () => new AbortedError("the operation was aborted", { cause: signal?.reason });
  if (signal?.aborted) throw aborted();
  const upgrade = tunnelUpgrade(new URL(request.url), request.token);
  const target = { hostname: upgrade.host, port: upgrade.port };
  let conn: DenoConn;
  try {
    conn = upgrade.secure ? await deno.connectTls(target) : await deno.connect(target);
  } catch (error) {
    throw tunnelConnectFailed(request.url, error);
  }
  const onAbort = () => conn.close();
  signal?.addEventListener("abort", onAbort, { once: true });
  let rest: Uint8Array;
  try {
    await writeAll(conn, new TextEncoder().encode(upgrade.request));
    rest = await switched(conn, request.url);
  } catch (error) {
    try {
      conn.close();
    } catch {
      // already closed
    }
    if (signal?.aborted) throw aborted();
    throw error instanceof ConnectionError ? error : tunnelConnectFailed(request.url, error);
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  return channelOver(conn, rest, events);
};

/** Reads the answer's head; the bytes after it when it is a 101, else a ConnectionError. */
async function switched(conn: DenoConn, where: string): Promise<Uint8Array> {
  const answer = new TunnelUpgradeAnswer(where);
  for (;;) {
    const buffer = new Uint8Array(READ_BYTES);
    const n = await conn.read(buffer);
    if (n === null) throw answer.closedError();
    const rest = answer.read(buffer.subarray(0, n));
    if (rest !== undefined) return rest;
  }
}

function channelOver(conn: DenoConn, rest: Uint8Array, events: Parameters<OpenTunnelChannel>[1]): TunnelChannel {
  const queue: Uint8Array[] = [];
  let queued = 0;
  let writing = false;
  let closing = false;
  let closedByUs = false;
  let drained: { promise: Promise<void>; resolve: () => void } | undefined;
  const release = () => {
    if (drained && (queued < HIGH_WATER || closedByUs)) {
      drained.resolve();
      drained = undefined;
    }
  };
  const closeConn = () => {
    try {
      conn.close();
    } catch {
      // already closed
    }
  };
  const pump = async () => {
    writing = true;
    try {
      for (let part = queue.shift(); part; part = queue.shift()) {
        await writeAll(conn, part);
        queued -= part.byteLength;
        release();
      }
    } catch {
      queue.length = 0;
      queued = 0;
      closeConn(); // the reading loop reports the end
    }
    writing = false;
    release();
    if (closing) closeConn();
  };
  void (async () => {
    if (rest.byteLength > 0) events.bytes(rest);
    try {
      for (;;) {
        const buffer = new Uint8Array(READ_BYTES);
        const n = await conn.read(buffer);
        if (n === null) break;
        events.bytes(buffer.subarray(0, n));
      }
    } catch {
      // closed, or failed: said below
    }
    closing = true;
    if (!writing) closeConn();
    if (!closedByUs) events.closed("the server closed the connection");
  })();
  return {
    keepsParts: true,
    send(parts) {
      if (closing) return;
      for (const part of parts) {
        queue.push(part);
        queued += part.byteLength;
      }
      if (!writing) void pump();
    },
    drained() {
      if (queued < HIGH_WATER || closing) return undefined;
      if (!drained) {
        let resolve: () => void = () => {};
        const promise = new Promise<void>((r) => {
          resolve = r;
        });
        drained = { promise, resolve };
      }
      return drained.promise;
    },
    close() {
      closedByUs = true;
      closing = true;
      release();
      if (!writing) closeConn(); // else once what is queued is written
    },
  };
}

async function writeAll(conn: DenoConn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.byteLength; ) at += await conn.write(bytes.subarray(at));
}
