/** Feeding a byte stream into tar-stream's parser, with backpressure: as one promise, or entry by entry. */
import { type Extract, extract as tarExtract } from "tar-stream";
import { storeError } from "./store-errors.js";

/** One entry of an archive being parsed: its header and a stream of its content. */
export type TarEntry = Extract extends AsyncIterable<infer S> ? S : never;

/**
 * Writes `source` into `extract` and ends it; stops (without error) when the parser is
 * destroyed, and destroys the parser with the source's error if the source fails.
 */
export async function feedTar(source: AsyncIterable<Uint8Array>, extract: Extract): Promise<void> {
  try {
    for await (const chunk of source) {
      if (extract.destroyed) return;
      if (!extract.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            extract.off("drain", done);
            extract.off("close", done);
            resolve();
          };
          extract.on("drain", done);
          extract.on("close", done);
        });
      }
    }
    extract.end(undefined);
  } catch (error) {
    extract.destroy(error as Error);
    throw error;
  }
}

/** Reads an entry's content to its end (what the parser needs before the next entry). */
export async function drainEntry(entry: TarEntry): Promise<void> {
  for await (const _ of entry) {
    // skipped
  }
}

/** Whether `error` is the parser's complaint about a malformed archive. */
export const isTarFormatError = (error: unknown): boolean =>
  /tar header|Unexpected end of data|Header exceeds max size/i.test((error as Error | undefined)?.message ?? "");

/**
 * The entries of the tar in `source`, in order; an entry's content that the caller does not
 * read is skipped. A malformed tar is "invalid" (`what` names it); a failing source fails with
 * its own error. Stopping early stops the parser.
 */
export async function* tarEntries(source: AsyncIterable<Uint8Array>, what: string): AsyncGenerator<TarEntry> {
  const extract = tarExtract();
  const feeding = feedTar(source, extract);
  // Awaited once the entries are read; a source that fails before then is not an unhandled rejection.
  feeding.catch(() => {});
  let finished = false;
  try {
    for await (const entry of extract as AsyncIterable<TarEntry>) {
      yield entry;
      await drainEntry(entry);
    }
    await feeding;
    finished = true;
  } catch (error) {
    if (isTarFormatError(error)) {
      throw storeError("invalid", `${what} is not a valid tar: ${(error as Error).message}`, error);
    }
    throw error;
  } finally {
    if (!finished) {
      extract.destroy(undefined as unknown as Error);
      await feeding.catch(() => {});
    }
  }
}
