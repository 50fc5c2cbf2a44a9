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

/** True when an Authorization header carries `token` (compared in constant time). */
export function bearerMatches(header: string | null | undefined, token: string): boolean {
  const expected = Buffer.from(`Bearer ${token}`);
  const given = Buffer.from(header ?? "");
  return given.length === expected.length && timingSafeEqual(given, expected);
}
