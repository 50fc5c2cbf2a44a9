/**
 * Content digests ("sha256:<hex>"), checked against a stream while it flows (node:crypto).
 * Every blob and manifest the store keeps is checked this way before anything of it is kept.
 * What a digest is, and its parts, are the kit's (shared with the fake's store).
 */
import { createHash, type Hash } from "node:crypto";
import { type Algorithm, algorithmOf } from "@sbx/server-kit/images/digest";
import { storeError } from "./store-errors.js";

export { algorithmOf, hexOf, isDigest } from "@sbx/server-kit/images/digest";

export function digestOf(bytes: Uint8Array, algorithm: Algorithm = "sha256"): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest("hex")}`;
}

/** Hashes what passes through it; `check()` at the end says whether it was `expected`. */
export class DigestCheck {
  readonly expected: string;
  /** What the bytes are, for messages: "layer sha256:… of docker.io/library/debian". */
  readonly what: string;
  /** The exact size the bytes must have, when a descriptor says it. */
  readonly size: number | undefined;
  readonly #hash: Hash;
  #bytes = 0;
  #checked = false;

  // Plain fields, no parameter properties: layer workers run this file from source under the tests.
  constructor(expected: string, what: string, size?: number) {
    this.expected = expected;
    this.what = what;
    this.size = size;
    this.#hash = createHash(algorithmOf(expected));
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Whether {@link check} ran (and so the whole was seen). */
  get checked(): boolean {
    return this.#checked;
  }

  update(chunk: Uint8Array): void {
    this.#bytes += chunk.byteLength;
    if (this.size !== undefined && this.#bytes > this.size) {
      throw storeError("digest-mismatch", `${this.what} is larger than the ${this.size} bytes its descriptor says`);
    }
    this.#hash.update(chunk);
  }

  /** Throws "digest-mismatch" unless the bytes seen were the expected ones. */
  check(): void {
    this.#checked = true;
    if (this.size !== undefined && this.#bytes !== this.size) {
      throw storeError(
        "digest-mismatch",
        `${this.what} has ${this.#bytes} bytes where its descriptor says ${this.size}`,
      );
    }
    const actual = `${algorithmOf(this.expected)}:${this.#hash.digest("hex")}`;
    if (actual !== this.expected) {
      throw storeError(
        "digest-mismatch",
        `${this.what} does not match its digest: expected ${this.expected}, got ${actual}`,
      );
    }
  }
}

/** Passes `source` through, checking it against `check` when it ends. */
export async function* checked(
  source: AsyncIterable<Uint8Array>,
  check: DigestCheck,
): AsyncGenerator<Uint8Array, void, undefined> {
  for await (const chunk of source) {
    check.update(chunk);
    yield chunk;
  }
  check.check();
}
