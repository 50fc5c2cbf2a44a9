/**
 * Bearer-token authentication (checked by the listener before a request's body is read, and
 * by the raw routes), and the token's life in the data dir.
 */

import { randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** The token given, else the one stored in the data dir, else a new one (stored, mode 0600). */
export function resolveToken(dataDir: string, given: string | undefined): { token: string; generated: boolean } {
  if (given) return { token: given, generated: false };
  const file = join(dataDir, "token");
  try {
    const stored = readFileSync(file, "utf8").trim();
    if (stored) return { token: stored, generated: false };
  } catch {}
  const token = randomBytes(32).toString("base64url");
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  return { token, generated: true };
}

/**
 * Whether an Authorization header carries `token` (compared in constant time); the expected
 * header is encoded once, not on every request.
 */
export function bearerMatcher(token: string): (header: string | null | undefined) => boolean {
  const expected = Buffer.from(`Bearer ${token}`);
  return (header) =>
    header != null && Buffer.byteLength(header) === expected.length && timingSafeEqual(Buffer.from(header), expected);
}
