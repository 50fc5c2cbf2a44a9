const ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz";

/**
 * A random id for idempotency keys and client-chosen process ids. Uses getRandomValues,
 * which (unlike randomUUID) also exists on pages served over plain http.
 */
export function randomId(prefix: string, length = 20): string {
  const bytes = new Uint8Array(length);
  globalThis.crypto.getRandomValues(bytes);
  let out = prefix;
  for (const b of bytes) out += ALPHABET[b % ALPHABET.length];
  return out;
}
