/**
 * Test support: a DNS resolver on this host's loopback (UDP), the upstream a test server's
 * DNS forwarder is given. It answers A records for the names it knows, NXDOMAIN for anything
 * else, and notes every name it was asked.
 */
import { createSocket, type Socket } from "node:dgram";

export interface TestResolver {
  readonly socket: Socket;
  /** "127.0.0.1:PORT", as `dnsUpstream` takes it. */
  readonly upstream: string;
  /** Every name it was asked, lower-cased, in order. */
  readonly asked: string[];
}

/** Starts a resolver answering `names` (lower-case name → IPv4 address). */
export function startTestResolver(names: Readonly<Record<string, string>>): Promise<TestResolver> {
  const socket = createSocket("udp4");
  const asked: string[] = [];
  socket.on("message", (query, from) => {
    if (query.length < 12) return;
    let at = 12;
    const labels: string[] = [];
    while (at < query.length && query[at] !== 0) {
      const length = query[at] as number;
      labels.push(query.subarray(at + 1, at + 1 + length).toString());
      at += length + 1;
    }
    const question = query.subarray(12, at + 5);
    const qtype = query.readUInt16BE(at + 1);
    const name = labels.join(".").toLowerCase();
    asked.push(name);
    const address = Object.hasOwn(names, name) ? names[name] : undefined;
    const header = Buffer.from(query.subarray(0, 12));
    header[2] = 0x81; // QR, RD
    header[3] = address !== undefined ? 0x80 : 0x83; // RA, NOERROR / NXDOMAIN
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(address !== undefined && qtype === 1 ? 1 : 0, 6);
    header.writeUInt32BE(0, 8);
    const answer =
      address !== undefined && qtype === 1
        ? Buffer.concat([
            Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]),
            Buffer.from(address.split(".").map(Number)),
          ])
        : Buffer.alloc(0);
    socket.send(Buffer.concat([header, question, answer]), from.port, from.address);
  });
  return new Promise((resolve) =>
    socket.bind(0, "127.0.0.1", () =>
      resolve({ socket, upstream: `127.0.0.1:${(socket.address() as { port: number }).port}`, asked }),
    ),
  );
}
