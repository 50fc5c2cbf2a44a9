/** HTTP/1.1 messages read from the bytes of a connection (latin1 text), for cases that speak it on the wire. */

/** A request or an answer: its first line, its head (lower-case names, each with its values), its body. */
export interface HttpMessage {
  readonly startLine: string;
  readonly headers: Readonly<Record<string, readonly string[]>>;
  readonly body: string;
  /** How many characters of the text it took. */
  readonly length: number;
}

/**
 * The first message in `bytes`, read by its own framing (Content-Length, chunked, or no body),
 * or undefined while it is incomplete.
 */
export function readHttpMessage(bytes: string): HttpMessage | undefined {
  const end = bytes.indexOf("\r\n\r\n");
  if (end === -1) return undefined;
  const [startLine = "", ...lines] = bytes.slice(0, end).split("\r\n");
  const headers: Record<string, string[]> = {};
  for (const line of lines) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).trim().toLowerCase();
    headers[name] = [...(headers[name] ?? []), line.slice(colon + 1).trim()];
  }
  let at = end + 4;
  if (headers["transfer-encoding"]?.join(",").toLowerCase() === "chunked") {
    let body = "";
    for (;;) {
      const lineEnd = bytes.indexOf("\r\n", at);
      if (lineEnd === -1) return undefined;
      const size = Number.parseInt(bytes.slice(at, lineEnd), 16);
      if (bytes.length < lineEnd + 2 + size + 2) return undefined;
      body += bytes.slice(lineEnd + 2, lineEnd + 2 + size);
      at = lineEnd + 2 + size + 2;
      if (size === 0) return { startLine, headers, body, length: at };
    }
  }
  const length = Number(headers["content-length"]?.[0] ?? 0);
  if (bytes.length < at + length) return undefined;
  return { startLine, headers, body: bytes.slice(at, at + length), length: at + length };
}

/** The status line of an answer that starts `bytes`. */
export const statusLine = (bytes: string): string => bytes.split("\r\n")[0] ?? "";
