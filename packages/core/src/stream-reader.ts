/**
 * `StreamReader`: a process's stdout or stderr as the user sees it. Async iterable of
 * chunks (strings in text mode, `Uint8Array` in binary mode), `lines()`, `readText()`,
 * `readBytes()` and a WHATWG `ReadableStream`. Readers share one cursor, like a pipe: what
 * one consumer has read, the next does not see again.
 */
import * as Effect from "effect/Effect";
import * as Stream from "effect/Stream";
import { concat } from "./bytes.js";
import type { EffectRunner } from "./effect-runner.js";
import { type OutputSource, outputChunks, outputTextChunks } from "./output-stream.js";

export type StreamMode = "text" | "binary";

export interface ReadOptions {
  /** Cancels the read (`AbortedError`). */
  readonly signal?: AbortSignal;
}

export class StreamReader<T extends string | Uint8Array = string> implements AsyncIterable<T> {
  readonly #runner: EffectRunner;
  readonly #source: OutputSource | undefined;
  readonly #mode: StreamMode;
  /** Bytes already delivered to a consumer (as text: up to the end of the last whole character). */
  #consumed = 0;

  /** @internal `source` undefined: an ignored stream, always empty. */
  constructor(runner: EffectRunner, source: OutputSource | undefined, mode: StreamMode) {
    this.#runner = runner;
    this.#source = source;
    this.#mode = mode;
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return this.chunks()[Symbol.asyncIterator]();
  }

  /** The chunks as they arrive; same as iterating the reader, with a signal. */
  chunks(options: ReadOptions = {}): AsyncGenerator<T> {
    return (this.#mode === "binary" ? this.#bytes(options.signal) : this.#text(options.signal)) as AsyncGenerator<T>;
  }

  /** Lines without their line ending ("\n" or "\r\n"); a last line without one is included. */
  async *lines(options: ReadOptions = {}): AsyncGenerator<string> {
    let pending = "";
    for await (const chunk of this.#text(options.signal)) {
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
    for await (const chunk of this.#text(options.signal)) text += chunk;
    return text;
  }

  /** Everything until the stream ends, as bytes. */
  async readBytes(options: ReadOptions = {}): Promise<Uint8Array> {
    if (!this.#source) return new Uint8Array(0);
    const from = this.#consumed;
    const chunks = await this.#runner.run(
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

  /** Text from where the reader has got to (`outputTextChunks`: whole characters only). */
  async *#text(signal: AbortSignal | undefined): AsyncGenerator<string> {
    if (!this.#source) return;
    for await (const chunk of this.#runner.iterate(outputTextChunks(this.#source, this.#consumed), signal)) {
      this.#consumed = chunk.end;
      yield chunk.text;
    }
  }

  async *#bytes(signal: AbortSignal | undefined): AsyncGenerator<Uint8Array> {
    if (!this.#source) return;
    for await (const chunk of this.#runner.iterate(outputChunks(this.#source, this.#consumed), signal)) {
      this.#consumed = chunk.offset + chunk.data.byteLength;
      yield chunk.data;
    }
  }
}
