/**
 * The one UTF-8 decoding path for process output (`StreamReader`, `CommandHandle`, and the
 * Effect API's `outputText`): bytes at byte offsets in, text out, a character split across
 * chunks (or across a resumed read) never broken, and every piece of text saying which bytes
 * it came from, so a reader can resume exactly after the last whole character it delivered.
 */

/** Text decoded from a stream's bytes `offset` (inclusive) to `end` (exclusive). */
export interface TextChunk {
  readonly text: string;
  readonly offset: number;
  readonly end: number;
}

/** Length of the longest prefix of `bytes` that does not end inside a UTF-8 character. */
export function completeUtf8Length(bytes: Uint8Array): number {
  const n = bytes.byteLength;
  for (let back = 1; back <= Math.min(4, n); back++) {
    const b = bytes[n - back] as number;
    if ((b & 0xc0) === 0x80) continue; // a continuation byte: look further back
    const need = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
    return need > back ? n - back : n;
  }
  return n;
}

/**
 * A UTF-8 decoder for one read of a stream: `decode` takes the bytes at `offset` and returns
 * the text of the whole characters among them and what came before; `end` delivers what is
 * left when the stream ends (an incomplete character, as U+FFFD). A new read starts a new
 * decoder at the `end` of the last chunk delivered.
 */
export class Utf8Decoder {
  #pending = new Uint8Array(0);
  #pendingAt: number;
  readonly #decoder = new TextDecoder();

  constructor(offset: number) {
    this.#pendingAt = offset;
  }

  /** Bytes at `offset` (following the ones given before) → the text they complete, if any. */
  decode(offset: number, data: Uint8Array): TextChunk | undefined {
    let bytes = data;
    let start = offset;
    if (this.#pending.byteLength > 0) {
      bytes = new Uint8Array(this.#pending.byteLength + data.byteLength);
      bytes.set(this.#pending);
      bytes.set(data, this.#pending.byteLength);
      start = this.#pendingAt;
    }
    const complete = completeUtf8Length(bytes);
    this.#pending = bytes.slice(complete);
    this.#pendingAt = start + complete;
    if (complete === 0) return undefined;
    return { text: this.#decoder.decode(bytes.subarray(0, complete)), offset: start, end: start + complete };
  }

  /** The stream ended: whatever is pending, decoded as it is (an invalid tail). */
  end(): TextChunk | undefined {
    if (this.#pending.byteLength === 0) return undefined;
    const chunk = {
      text: this.#decoder.decode(this.#pending),
      offset: this.#pendingAt,
      end: this.#pendingAt + this.#pending.byteLength,
    };
    this.#pendingAt = chunk.end;
    this.#pending = new Uint8Array(0);
    return chunk;
  }
}
