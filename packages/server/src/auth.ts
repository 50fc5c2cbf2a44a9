/** Bearer-token authentication for every RPC, and the token's life in the data dir. */

import { randomBytes, timingSafeEqual } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

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

export function authInterceptor(token: string): Interceptor {
  const expected = Buffer.from(`Bearer ${token}`);
  return (next) => async (request) => {
    const given = Buffer.from(request.header.get("authorization") ?? "");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new ConnectError("missing or wrong bearer token", Code.Unauthenticated);
    }
    return next(request);
  };
}
