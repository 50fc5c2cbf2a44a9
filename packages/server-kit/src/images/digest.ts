/**
 * Content digests ("sha256:<hex>", "sha512:<hex>"): what is one, its parts, and the digest of
 * bytes in memory (WebCrypto: browser-safe). The server checks streams with node:crypto.
 * Imports nothing: also exported alone (`@sbx/server-kit/images/digest`) for the server's layer
 * workers, which never load the rest.
 */

const DIGEST = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

export type Algorithm = "sha256" | "sha512";

export function isDigest(value: unknown): value is string {
  return typeof value === "string" && DIGEST.test(value);
}

export function algorithmOf(digest: string): Algorithm {
  return digest.startsWith("sha512:") ? "sha512" : "sha256";
}

/** The hex part of a digest (what a store names files by). */
export const hexOf = (digest: string): string => digest.slice(digest.indexOf(":") + 1);

/** The digest of `bytes` (a string as UTF-8). */
export async function digestOfBytes(bytes: Uint8Array | string, algorithm: Algorithm = "sha256"): Promise<string> {
  const data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
  const hash = await crypto.subtle.digest(
    algorithm === "sha512" ? "SHA-512" : "SHA-256",
    data as Uint8Array<ArrayBuffer>,
  );
  return `${algorithm}:${Array.from(new Uint8Array(hash), (b) => b.toString(16).padStart(2, "0")).join("")}`;
}
