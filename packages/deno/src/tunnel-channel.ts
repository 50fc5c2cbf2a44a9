/**
 * `sb.connect` / `sb.tunnel`'s channel to the server's tunnel route for Deno
 * (`ClientDefaults.tunnelChannel`): a plain HTTP/1.1 upgrade to `sbx.tunnel.v1` over
 * `Deno.connect` / `Deno.connectTls` (`--allow-net` for the endpoint, as for a WebSocket), after
 * which the connection carries the frames as they are: no WebSocket masking of every byte
 * sent, which the server would have to undo byte by byte (see @sbx/node's tunnel-channel.ts).
 */
import { AbortedError, ConnectionError, UnsupportedError } from "@sbx/core";
import { type OpenTunnelChannel, TUNNEL_PROTOCOL, type TunnelChannel } from "@sbx/core/adapter";
import { type DenoConn, denoGlobal } from "./deno-api.ts";

/** Bytes queued for the connection past which writers wait. */
const HIGH_WATER = 1024 * 1024;
const READ_BYTES = 64 * 1024;
/** The longest answer head read before giving up on it. */
const MAX_HEAD_BYTES = 16 * 1024;

export const denoTunnelChannel: OpenTunnelChannel = async (request, events) => {
  const deno = denoGlobal();
  if (!deno) throw new UnsupportedError("the Deno tunnel channel needs Deno");
  const { signal } = request;
  const aborted = () => new AbortedError("the operation was aborted", { cause: signal?.reason });
  if (signal?.aborted) throw aborted();
  const url = new URL(request.url);
  const secure = url.protocol === "https:";
  const target = { hostname: url.hostname.replace(/^\[|\]$/g, ""), port: Number(url.port || (secure ? 443 : 80)) };
  let conn: DenoConn;
  try {
    conn = secure ? await deno.connectTls(target) : await deno.connect(target);
  } catch (error) {
    throw new ConnectionError(`${request.url}: ${error instanceof Error ? error.message : String(error)}`, {
      cause: error,
    });
  }
  const onAbort = () => conn.close();
  signal?.addEventListener("abort", onAbort, { once: true });
  let rest: Uint8Array;
  try {
    await writeAll(
      conn,
      new TextEncoder().encode(
        `GET ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\nconnection: Upgrade\r\n` +
          `upgrade: ${TUNNEL_PROTOCOL}\r\n${request.token ? `authorization: Bearer ${request.token}\r\n` : ""}\r\n`,
      ),
    );
    rest = await switched(conn, request.url);
  } catch (error) {
    try {
      conn.close();
    } catch {
      // already closed
    }
    if (signal?.aborted) throw aborted();
    throw error instanceof ConnectionError
      ? error
      : new ConnectionError(`${request.url}: ${error instanceof Error ? error.message : String(error)}`, {
          cause: error,
        });
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  return channelOver(conn, rest, events);
};

/** Reads the answer's head; the bytes after it when it is a 101, else a ConnectionError. */
async function switched(conn: DenoConn, where: string): Promise<Uint8Array> {
  let head = new Uint8Array(0);
  for (;;) {
    const buffer = new Uint8Array(READ_BYTES);
    const n = await conn.read(buffer);
    if (n === null) throw new ConnectionError(`${where}: the server closed the connection before answering`);
    const joined = new Uint8Array(head.byteLength + n);
    joined.set(head);
    joined.set(buffer.subarray(0, n), head.byteLength);
    head = joined;
    const text = new TextDecoder("latin1").decode(head);
    const end = text.indexOf("\r\n\r\n");
    if (end === -1) {
      if (head.byteLength > MAX_HEAD_BYTES) throw new ConnectionError(`${where}: the server's answer has no end`);
      continue;
    }
    const status = text.slice(0, text.indexOf("\r\n"));
    if (!/^HTTP\/1\.1 101 /.test(status)) {
      throw new ConnectionError(
        `${where}: the server answered "${status}" to the tunnel upgrade; is the endpoint an sbx server that serves tunnels?`,
      );
    }
    return head.subarray(end + 4);
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
