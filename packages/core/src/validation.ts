/**
 * Input checks that run before any request is sent, so bad input fails fast with an
 * `InvalidError` and changes nothing on the server. The server repeats these checks.
 */
import * as Effect from "effect/Effect";
import { InvalidError } from "./errors.js";

/** Maximum UTF-8 byte total of all arguments of one command. */
export const ARG_MAX_BYTES = 65_536;
/** Maximum sandbox lifetime the server accepts (24 hours). */
export const MAX_SANDBOX_TIMEOUT_MS = 86_400_000;
export const MAX_TAGS = 64;
export const MAX_TAG_KEY_LENGTH = 63;
export const MAX_TAG_VALUE_LENGTH = 255;

/** `build`'s result, or what it threw as an InvalidError (these checks throw where they find a problem). */
export const validated = <A>(build: () => A): Effect.Effect<A, InvalidError> =>
  Effect.try({ try: build, catch: (e) => (e instanceof InvalidError ? e : new InvalidError(String(e))) });

const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$/;
const encoder = new TextEncoder();

export const utf8Length = (s: string): number => {
  // Fast path: pure ASCII strings are one byte per character.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: ASCII range check
  if (/^[\x00-\x7f]*$/.test(s)) return s.length;
  return encoder.encode(s).byteLength;
};

export function validateArgv(argv: unknown, what = "command"): string[] {
  if (!Array.isArray(argv)) throw new InvalidError(`${what} must be an array of strings`);
  if (argv.length === 0) throw new InvalidError(`${what} must not be empty`);
  let total = 0;
  argv.forEach((arg, i) => {
    if (typeof arg !== "string") {
      throw new InvalidError(`${what}[${i}] must be a string, got ${describe(arg)}`);
    }
    total += utf8Length(arg);
  });
  if (total > ARG_MAX_BYTES) {
    throw new InvalidError(
      `${what} arguments total ${total} UTF-8 bytes, more than the limit of ${ARG_MAX_BYTES} (ARG_MAX_BYTES); pass large data through stdin or a file instead`,
    );
  }
  return argv as string[];
}

export function validateName(name: unknown, what = "name"): string {
  if (typeof name !== "string" || !NAME_PATTERN.test(name)) {
    throw new InvalidError(
      `invalid ${what} ${JSON.stringify(name)}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return name;
}

export function validateAbsolutePath(path: unknown, what: string): string {
  if (typeof path !== "string" || !path.startsWith("/")) {
    throw new InvalidError(`${what} must be an absolute path, got ${JSON.stringify(path)}`);
  }
  if (path.includes("\0")) throw new InvalidError(`${what} must not contain a NUL character`);
  return path;
}

/** A duration in milliseconds: a finite, non-negative number (rounded to whole ms). */
export function validateDuration(value: unknown, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new InvalidError(`${what} must be a non-negative number of milliseconds, got ${describe(value)}`);
  }
  if (value > max) throw new InvalidError(`${what} must be at most ${max} ms, got ${value}`);
  return Math.round(value);
}

export function validateTags(tags: unknown): Record<string, string> {
  if (typeof tags !== "object" || tags === null || Array.isArray(tags)) {
    throw new InvalidError("tags must be an object of string keys and string values");
  }
  const entries = Object.entries(tags);
  if (entries.length > MAX_TAGS) throw new InvalidError(`at most ${MAX_TAGS} tags are allowed, got ${entries.length}`);
  for (const [k, v] of entries) {
    if (k.length === 0 || k.length > MAX_TAG_KEY_LENGTH) {
      throw new InvalidError(`tag key ${JSON.stringify(k)} must be 1-${MAX_TAG_KEY_LENGTH} characters`);
    }
    if (typeof v !== "string") throw new InvalidError(`tag ${JSON.stringify(k)} must have a string value`);
    if (v.length > MAX_TAG_VALUE_LENGTH) {
      throw new InvalidError(`tag ${JSON.stringify(k)} value must be at most ${MAX_TAG_VALUE_LENGTH} characters`);
    }
  }
  return { ...(tags as Record<string, string>) };
}

export function validateEnv(env: unknown): Record<string, string> {
  if (typeof env !== "object" || env === null || Array.isArray(env)) {
    throw new InvalidError("env must be an object of string keys and string values");
  }
  for (const [k, v] of Object.entries(env)) {
    if (k.length === 0 || k.includes("=") || k.includes("\0")) {
      throw new InvalidError(`env name ${JSON.stringify(k)} must be non-empty without '=' or NUL`);
    }
    if (typeof v !== "string") throw new InvalidError(`env ${k} must be a string, got ${describe(v)}`);
    if (v.includes("\0")) throw new InvalidError(`env ${k} must not contain a NUL character`);
  }
  return { ...(env as Record<string, string>) };
}

/** A whole number from 1 to 2^32 - 1 (a uint32 on the wire), e.g. `diskMiB`. */
export function validatePositiveInteger(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 0xffff_ffff) {
    throw new InvalidError(`${what} must be a positive whole number, got ${describe(value)}`);
  }
  return value;
}

/** `cpu` / `memoryMiB`: a positive number, or `{ request, limit }` with request ≤ limit. */
export function validateResource(value: unknown, what: string): { request: number; limit: number } {
  if (typeof value === "number") {
    if (!Number.isFinite(value) || value <= 0) throw new InvalidError(`${what} must be a positive number`);
    return { request: value, limit: value };
  }
  if (typeof value === "object" && value !== null) {
    const { request, limit } = value as { request?: unknown; limit?: unknown };
    if (typeof request !== "number" || typeof limit !== "number" || !(request > 0) || !(limit > 0)) {
      throw new InvalidError(`${what}.request and ${what}.limit must be positive numbers`);
    }
    if (!Number.isFinite(request) || !Number.isFinite(limit) || request > limit) {
      throw new InvalidError(`${what}.request must not exceed ${what}.limit`);
    }
    return { request, limit };
  }
  throw new InvalidError(`${what} must be a number or { request, limit }`);
}

export function validateOneOf<T extends string>(value: unknown, allowed: readonly T[], what: string): T {
  if (!allowed.includes(value as T)) {
    throw new InvalidError(`${what} must be one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}`);
  }
  return value as T;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "number") return String(value);
  return typeof value;
}
