/**
 * Content digests ("sha256:<hex>"): parsing, and checking a stream against one while it flows.
 * Every blob and manifest the store keeps is checked this way before anything of it is kept.
 */
import { createHash, type Hash } from "node:crypto";
import { storeError } from "./store-errors.js";

const DIGEST = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

export type Algorithm = "sha256" | "sha512";

export function isDigest(value: unknown): value is string {
  return typeof value === "string" && DIGEST.test(value);
}

export function algorithmOf(digest: string): Algorithm {
  return digest.startsWith("sha512:") ? "sha512" : "sha256";
}

/** The hex part of a digest (what the store names files by). */
export const hexOf = (digest: string): string => digest.slice(digest.indexOf(":") + 1);

export function digestOf(bytes: Uint8Array, algorithm: Algorithm = "sha256"): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest("hex")}`;
}

/** Hashes what passes through it; `check()` at the end says whether it was `expected`. */
export class DigestCheck {
  readonly #hash: Hash;
  #bytes = 0;
  #checked = false;

  constructor(
    readonly expected: string,
    /** What the bytes are, for messages: "layer sha256:… of docker.io/library/debian". */
    readonly what: string,
    /** The exact size the bytes must have, when a descriptor says it. */
    readonly size?: number,
  ) {
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
