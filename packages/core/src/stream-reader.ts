/**
 * `StreamReader`: a process's stdout or stderr as the user sees it. Async iterable of
 * chunks (strings in text mode, `Uint8Array` in binary mode), `lines()`, `readText()`,
 * `readBytes()` and a WHATWG `ReadableStream`. Readers share one cursor, like a pipe: what
 * one consumer has read, the next does not see again.
 */
import * as Effect from "effect/Effect";
import * as Stream from "effect/Stream";
import type { ClientRuntime } from "./client-runtime.js";
import { type OutputSource, outputChunks } from "./output-stream.js";

export type StreamMode = "text" | "binary";

export interface ReadOptions {
  /** Cancels the read (`AbortedError`). */
  readonly signal?: AbortSignal;
}

export class StreamReader<T extends string | Uint8Array = string> implements AsyncIterable<T> {
  readonly #runtime: ClientRuntime;
  readonly #source: OutputSource | undefined;
  readonly #mode: StreamMode;
  readonly #decoder = new TextDecoder();
  /** Bytes already delivered to a consumer. */
  #consumed = 0;

  /** @internal `source` undefined: an ignored stream, always empty. */
  constructor(runtime: ClientRuntime, source: OutputSource | undefined, mode: StreamMode) {
    this.#runtime = runtime;
    this.#source = source;
    this.#mode = mode;
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return this.chunks()[Symbol.asyncIterator]();
  }

  /** The chunks as they arrive; same as iterating the reader, with a signal. */
  async *chunks(options: ReadOptions = {}): AsyncGenerator<T> {
    if (this.#mode === "binary") {
      yield* this.#bytes(options.signal) as AsyncGenerator<T>;
      return;
    }
    for await (const bytes of this.#bytes(options.signal)) {
      const text = this.#decoder.decode(bytes, { stream: true });
      if (text) yield text as T;
    }
    const rest = this.#decoder.decode();
    if (rest) yield rest as T;
  }

  /** Lines without their line ending ("\n" or "\r\n"); a last line without one is included. */
  async *lines(options: ReadOptions = {}): AsyncGenerator<string> {
    let pending = "";
    for await (const chunk of this.#textChunks(options.signal)) {
      pending += chunk;
      let newline = pending.indexOf("\n");
      while (newline !== -1) {
        yield pending.slice(0, newline > 0 && pending[newline - 1] === "\r" ? newline - 1 : newline);
        pending = pending.slice(newline + 1);
        newline = pending.indexOf("\n");
      }
    }
    if (pending) yield pending;
  }

  /** Everything until the stream ends, as UTF-8 text. */
  async readText(options: ReadOptions = {}): Promise<string> {
    let text = "";
    for await (const chunk of this.#textChunks(options.signal)) text += chunk;
    return text;
  }

  /** Everything until the stream ends, as bytes. */
  async readBytes(options: ReadOptions = {}): Promise<Uint8Array> {
    if (!this.#source) return new Uint8Array(0);
    const from = this.#consumed;
    const chunks = await this.#runtime.run(
      outputChunks(this.#source, from).pipe(
        Stream.tap((chunk) => Effect.sync(() => (this.#consumed = chunk.offset + chunk.data.byteLength))),
        Stream.runCollect,
      ),
      options.signal,
    );
    return concat(Array.from(chunks, (c) => c.data));
  }

  /** The stream as a WHATWG `ReadableStream` (cancel it to stop reading). */
  readableStream(): ReadableStream<T> {
    const controller = new AbortController();
    const iterator = this.chunks({ signal: controller.signal });
    return new ReadableStream<T>({
      async pull(sink) {
        try {
          const next = await iterator.next();
          if (next.done) sink.close();
          else sink.enqueue(next.value);
        } catch (error) {
          sink.error(error);
        }
      },
      async cancel() {
        controller.abort();
        await iterator.return(undefined);
      },
    });
  }

  async *#textChunks(signal: AbortSignal | undefined): AsyncGenerator<string> {
    if (this.#mode === "text") {
      yield* this.chunks({ signal }) as AsyncGenerator<string>;
      return;
    }
    const decoder = new TextDecoder();
    for await (const bytes of this.#bytes(signal)) {
      const text = decoder.decode(bytes, { stream: true });
      if (text) yield text;
    }
    const rest = decoder.decode();
    if (rest) yield rest;
  }

  async *#bytes(signal: AbortSignal | undefined): AsyncGenerator<Uint8Array> {
    if (!this.#source) return;
    for await (const chunk of this.#runtime.iterate(outputChunks(this.#source, this.#consumed), signal)) {
      this.#consumed = chunk.offset + chunk.data.byteLength;
      yield chunk.data;
    }
  }
}

/** The bytes of `parts` in one array (the part itself when there is one). */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1 && parts[0]) return parts[0];
  let length = 0;
  for (const p of parts) length += p.byteLength;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
