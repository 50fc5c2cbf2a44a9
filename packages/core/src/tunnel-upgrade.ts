/**
 * The plain HTTP/1.1 upgrade to the tunnel route (`Upgrade: sbx.tunnel.v1`, contract in
 * `@sbx/proto`'s port-mux.ts) that the adapters with sockets open instead of a WebSocket
 * (@sbx/node, @sbx/bun, @sbx/deno): where to connect, the request's head, the answer's head
 * read from bytes as they come, and the errors each step ends with. No socket here: each
 * adapter connects and reads its own way. Browser-safe.
 */
import { MUX_PROTOCOL } from "@sbx/proto";
import { ConnectionError } from "./errors.js";

/** The longest answer head read before giving up on it. */
const MAX_ANSWER_HEAD_BYTES = 16 * 1024;
const HEAD_END = [13, 10, 13, 10]; // "\r\n\r\n"

/** Where to connect for the route's URL, and what to write first. */
export interface TunnelUpgrade {
  /** The host name or address (an IPv6 address without its brackets). */
  readonly host: string;
  /** The URL's port, or its scheme's. */
  readonly port: number;
  /** https: (TLS). */
  readonly secure: boolean;
  /** The upgrade request's head, to write as the connection's first bytes. */
  readonly request: string;
}

/** The upgrade to the route at `url` (http: or https:), with `token` as a bearer when there is one. */
export function tunnelUpgrade(url: URL, token: string | undefined): TunnelUpgrade {
  const secure = url.protocol === "https:";
  return {
    host: url.hostname.replace(/^\[|\]$/g, ""),
    port: Number(url.port || (secure ? 443 : 80)),
    secure,
    request:
      `GET ${url.pathname}${url.search} HTTP/1.1\r\nhost: ${url.host}\r\nconnection: Upgrade\r\n` +
      `upgrade: ${MUX_PROTOCOL}\r\n${token ? `authorization: Bearer ${token}\r\n` : ""}\r\n`,
  };
}

/** The server's answer to the upgrade request, read from the connection's bytes as they come. */
export class TunnelUpgradeAnswer {
  readonly #where: string;
  #head = new Uint8Array(0);

  /** `where`: the route's URL, for messages. */
  constructor(where: string) {
    this.#where = where;
  }

  /**
   * Takes the next bytes read: undefined while the answer's head is still incomplete, then the
   * bytes that came after it (the first frames) when the server switched protocols. Throws a
   * ConnectionError for any other answer, or a head too long to be one.
   */
  read(chunk: Uint8Array): Uint8Array | undefined {
    const head = new Uint8Array(this.#head.byteLength + chunk.byteLength);
    head.set(this.#head);
    head.set(chunk, this.#head.byteLength);
    this.#head = head;
    const end = indexOf(head, HEAD_END);
    if (end === -1) {
      if (head.byteLength > MAX_ANSWER_HEAD_BYTES) {
        throw new ConnectionError(`${this.#where}: the server's answer has no end`);
      }
      return undefined;
    }
    const status = latin1(head.subarray(0, indexOf(head, HEAD_END.slice(0, 2))));
    if (!/^HTTP\/1\.1 101 /.test(status)) throw tunnelUpgradeRefused(this.#where, `"${status}"`);
    return head.subarray(end + HEAD_END.length);
  }

  /** The error for a connection that closed before the answer's head was complete. */
  closedError(): ConnectionError {
    return new ConnectionError(`${this.#where}: the server closed the connection before answering`);
  }
}

/** The server answered the upgrade with something other than 101 (`answer`, as the message quotes it). */
export const tunnelUpgradeRefused = (where: string, answer: string): ConnectionError =>
  new ConnectionError(
    `${where}: the server answered ${answer} to the tunnel upgrade; is the endpoint an sbx server that serves tunnels?`,
  );

/** Connecting, or the connection before the upgrade, failed with `error`. */
export const tunnelConnectFailed = (where: string, error: unknown): ConnectionError =>
  new ConnectionError(`${where}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });

function indexOf(bytes: Uint8Array, sought: readonly number[]): number {
  search: for (let at = 0; at + sought.length <= bytes.byteLength; at++) {
    for (let i = 0; i < sought.length; i++) if (bytes[at + i] !== sought[i]) continue search;
    return at;
  }
  return -1;
}

/** Bytes as ISO-8859-1 text, one character a byte. */
function latin1(bytes: Uint8Array): string {
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return text;
}
