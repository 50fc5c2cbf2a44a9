/**
 * The contract's input rules, shared by the server and the fake (hand-written, not
 * generated). Each check returns a problem sentence, or undefined when the input is fine.
 */

/** Maximum UTF-8 byte total of all arguments of one command. */
export const ARG_MAX_BYTES = 65_536;
export const DEFAULT_SANDBOX_TIMEOUT_MS = 300_000;
export const MAX_SANDBOX_TIMEOUT_MS = 86_400_000;
export const MAX_TAGS = 64;
export const MAX_TAG_KEY_LENGTH = 63;
export const MAX_TAG_VALUE_LENGTH = 255;
/** Longest a long-poll (WaitSandbox, WaitProcess) is held by the server. */
export const MAX_LONG_POLL_MS = 10_000;
export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1_000;

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/;
const ID = /^[A-Za-z0-9._-]{1,128}$/;
const encoder = new TextEncoder();

export function nameProblem(value: string, what: string): string | undefined {
  return NAME.test(value)
    ? undefined
    : `invalid ${what} ${JSON.stringify(value)}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`;
}

export function idProblem(value: string, what: string): string | undefined {
  return ID.test(value) ? undefined : `invalid ${what} ${JSON.stringify(value)}`;
}

export function argvProblem(argv: readonly string[], what: string, allowEmpty: boolean): string | undefined {
  if (!allowEmpty && argv.length === 0) return `${what} must not be empty`;
  let total = 0;
  for (const arg of argv) total += encoder.encode(arg).byteLength;
  return total > ARG_MAX_BYTES
    ? `${what} arguments total ${total} UTF-8 bytes, more than the limit of ${ARG_MAX_BYTES}`
    : undefined;
}

export function workdirProblem(workdir: string): string | undefined {
  if (workdir === "") return undefined;
  if (!workdir.startsWith("/")) return `workdir must be an absolute path, got ${JSON.stringify(workdir)}`;
  return workdir.includes("\0") ? "workdir must not contain NUL" : undefined;
}

export function envProblem(env: Readonly<Record<string, string>>): string | undefined {
  for (const [key, value] of Object.entries(env)) {
    if (key === "" || key.includes("=") || key.includes("\0")) return `invalid env name ${JSON.stringify(key)}`;
    if (value.includes("\0")) return `env ${key} must not contain NUL`;
  }
  return undefined;
}

export function tagsProblem(tags: Readonly<Record<string, string>>): string | undefined {
  const entries = Object.entries(tags);
  if (entries.length > MAX_TAGS) return `at most ${MAX_TAGS} tags are allowed, got ${entries.length}`;
  for (const [k, v] of entries) {
    if (k.length === 0 || k.length > MAX_TAG_KEY_LENGTH) {
      return `tag key ${JSON.stringify(k)} must be 1-${MAX_TAG_KEY_LENGTH} characters`;
    }
    if (v.length > MAX_TAG_VALUE_LENGTH) {
      return `tag ${JSON.stringify(k)} value must be at most ${MAX_TAG_VALUE_LENGTH} characters`;
    }
  }
  return undefined;
}

export function timeoutProblem(ms: bigint, what: string, max = MAX_SANDBOX_TIMEOUT_MS): string | undefined {
  return ms > BigInt(max) ? `${what} must be at most ${max} ms` : undefined;
}

/** Longest a finished command's output may be kept for reconnection (30 days). */
export const MAX_COMMAND_TTL_MS = 30 * 86_400_000;
/** Largest terminal, in rows or columns. */
export const MAX_PTY_DIMENSION = 10_000;

export function ptySizeProblem(rows: number, cols: number, allowZero: boolean): string | undefined {
  for (const [what, n] of [
    ["rows", rows],
    ["cols", cols],
  ] as const) {
    if (!Number.isInteger(n) || n < (allowZero ? 0 : 1) || n > MAX_PTY_DIMENSION) {
      return `terminal ${what} must be an integer from 1 to ${MAX_PTY_DIMENSION}, got ${n}`;
    }
  }
  return undefined;
}

/** Longest path a filesystem call takes, in UTF-8 bytes (Linux's PATH_MAX). */
export const MAX_PATH_BYTES = 4096;
/** Largest chunk of one WriteFile call. */
export const MAX_UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024;

export function pathProblem(path: string): string | undefined {
  if (!path.startsWith("/")) return `path must be absolute, got ${JSON.stringify(path)}`;
  if (path.includes("\0")) return "path must not contain NUL";
  const bytes = encoder.encode(path).byteLength;
  return bytes > MAX_PATH_BYTES ? `path is ${bytes} UTF-8 bytes, more than the limit of ${MAX_PATH_BYTES}` : undefined;
}
