// The tunnel route's plain HTTP/1.1 upgrade as the socket adapters (@sbx/node, @sbx/bun,
// @sbx/deno) speak it: the target and request head they write, and the answer head read from
// bytes cut anywhere.
import { describe, expect, it } from "vitest";
import { ConnectionError } from "./errors.js";
import { TunnelUpgradeAnswer, tunnelUpgrade } from "./tunnel-upgrade.js";

const WHERE = "http://sbx.test/sbx.v1/sandboxes/sb-1/tunnel";
const bytes = (text: string) => new TextEncoder().encode(text);
const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : new TextDecoder().decode(b));

/** What `read` returned for each piece, or what it threw. */
function readAll(answer: TunnelUpgradeAnswer, pieces: Uint8Array[]): (string | undefined)[] | Error {
  try {
    return pieces.map((piece) => text(answer.read(piece)));
  } catch (error) {
    return error as Error;
  }
}

describe("tunnelUpgrade", () => {
  it("connects to the host and the port (or the scheme's), with TLS for https:; IPv6 without brackets", () => {
    const target = (url: string) => {
      const { host, port, secure } = tunnelUpgrade(new URL(url), undefined);
      return { host, port, secure };
    };
    expect(target("http://sbx.test:7420/x")).toEqual({ host: "sbx.test", port: 7420, secure: false });
    expect(target("https://sbx.test/x")).toEqual({ host: "sbx.test", port: 443, secure: true });
    expect(target("http://[::1]/x")).toEqual({ host: "::1", port: 80, secure: false });
  });

  it("asks to upgrade to sbx.tunnel.v1, with the token as a bearer when there is one", () => {
    const url = new URL("http://sbx.test:7420/base/sbx.v1/sandboxes/sb-1/tunnel?x=1");
    expect(tunnelUpgrade(url, "secret").request).toBe(
      "GET /base/sbx.v1/sandboxes/sb-1/tunnel?x=1 HTTP/1.1\r\nhost: sbx.test:7420\r\nconnection: Upgrade\r\n" +
        "upgrade: sbx.tunnel.v1\r\nauthorization: Bearer secret\r\n\r\n",
    );
    expect(tunnelUpgrade(url, undefined).request).toBe(
      "GET /base/sbx.v1/sandboxes/sb-1/tunnel?x=1 HTTP/1.1\r\nhost: sbx.test:7420\r\nconnection: Upgrade\r\n" +
        "upgrade: sbx.tunnel.v1\r\n\r\n",
    );
  });
});

describe("TunnelUpgradeAnswer", () => {
  const switching = "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: sbx.tunnel.v1\r\n\r\n";

  it("a 101 cut byte by byte: nothing until the head's end, then the bytes after it", () => {
    const all = bytes(`${switching}frames`);
    const end = switching.length - 1; // the head's last byte arrives with the frames
    const pieces = [...Array.from({ length: end }, (_, i) => all.subarray(i, i + 1)), all.subarray(end)];
    expect(readAll(new TunnelUpgradeAnswer(WHERE), pieces)).toEqual([...Array(end).fill(undefined), "frames"]);
  });

  it("a 101 and the first frames in one piece: the frames", () => {
    expect(readAll(new TunnelUpgradeAnswer(WHERE), [bytes(`${switching}\u0001\u0002`)])).toEqual(["\u0001\u0002"]);
  });

  it("any other answer is a ConnectionError quoting its status line", () => {
    const error = readAll(new TunnelUpgradeAnswer(WHERE), [bytes("HTTP/1.1 404 Not Found\r\n"), bytes("a: b\r\n\r\n")]);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as Error).message).toBe(
      `${WHERE}: the server answered "HTTP/1.1 404 Not Found" to the tunnel upgrade; is the endpoint an sbx server that serves tunnels?`,
    );
    expect(readAll(new TunnelUpgradeAnswer(WHERE), [bytes("HTTP/1.0 101 Switching\r\n\r\n")])).toBeInstanceOf(
      ConnectionError,
    );
  });

  it("a head past 16 KiB without its end is a ConnectionError", () => {
    const answer = new TunnelUpgradeAnswer(WHERE);
    expect(readAll(answer, [bytes(`HTTP/1.1 101 OK\r\nx: ${"a".repeat(16 * 1024 - 32)}`)])).toEqual([undefined]);
    const error = readAll(answer, [bytes("a".repeat(64))]);
    expect(error).toBeInstanceOf(ConnectionError);
    expect((error as Error).message).toBe(`${WHERE}: the server's answer has no end`);
  });

  it("a connection closed before the head's end: its error names the route", () => {
    const error = new TunnelUpgradeAnswer(WHERE).closedError();
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error.message).toBe(`${WHERE}: the server closed the connection before answering`);
  });
});
