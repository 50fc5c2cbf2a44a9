/** Feeding a byte stream into tar-stream's parser, with backpressure, as one promise. */
import type { Extract } from "tar-stream";

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
