const ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz";

/** Random bytes drawn ahead, so an id costs one `getRandomValues` per 4 KiB rather than per id. */
let pool = new Uint8Array(0);
let used = 0;

/**
 * A random id for idempotency keys and client-chosen process ids. Uses getRandomValues,
 * which (unlike randomUUID) also exists on pages served over plain http.
 */
export function randomId(prefix: string, length = 20): string {
  if (used + length > pool.byteLength) {
    pool = new Uint8Array(Math.max(4096, length));
    globalThis.crypto.getRandomValues(pool);
    used = 0;
  }
  let out = prefix;
  for (let i = used; i < used + length; i++) out += ALPHABET[(pool[i] as number) % ALPHABET.length];
  used += length;
  return out;
}
