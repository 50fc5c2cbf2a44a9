/** The server-side input checks the fake shares with the real server's contract. */
import { Code, ConnectError } from "@connectrpc/connect";

export const ARG_MAX_BYTES = 65_536;
export const MAX_SANDBOX_TIMEOUT_MS = 86_400_000;
export const DEFAULT_SANDBOX_TIMEOUT_MS = 300_000;
const NAME = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/;
const ID = /^[A-Za-z0-9._-]{1,128}$/;
const encoder = new TextEncoder();

export const invalid = (message: string) => new ConnectError(message, Code.InvalidArgument);

export function checkName(value: string, what: string): void {
  if (!NAME.test(value)) {
    throw invalid(`invalid ${what} ${JSON.stringify(value)}: use 1-64 letters, digits, '.', '_' or '-'`);
  }
}

export function checkId(value: string, what: string): void {
  if (!ID.test(value)) throw invalid(`invalid ${what} ${JSON.stringify(value)}`);
}

export function checkArgv(argv: readonly string[], what: string, allowEmpty: boolean): void {
  if (!allowEmpty && argv.length === 0) throw invalid(`${what} must not be empty`);
  let total = 0;
  for (const arg of argv) total += encoder.encode(arg).byteLength;
  if (total > ARG_MAX_BYTES) throw invalid(`${what} arguments total ${total} bytes, more than ${ARG_MAX_BYTES}`);
}

export function checkWorkdir(workdir: string): void {
  if (workdir !== "" && !workdir.startsWith("/"))
    throw invalid(`workdir must be absolute, got ${JSON.stringify(workdir)}`);
}

export function checkEnv(env: Readonly<Record<string, string>>): void {
  for (const key of Object.keys(env)) {
    if (key === "" || key.includes("=") || key.includes("\0")) throw invalid(`invalid env name ${JSON.stringify(key)}`);
  }
}

export function checkTags(tags: Readonly<Record<string, string>>): void {
  const entries = Object.entries(tags);
  if (entries.length > 64) throw invalid(`at most 64 tags are allowed, got ${entries.length}`);
  for (const [k, v] of entries) {
    if (k.length === 0 || k.length > 63) throw invalid(`tag key ${JSON.stringify(k)} must be 1-63 characters`);
    if (v.length > 255) throw invalid(`tag ${JSON.stringify(k)} value must be at most 255 characters`);
  }
}
