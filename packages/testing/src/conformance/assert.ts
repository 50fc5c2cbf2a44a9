/** Minimal assertions with no runtime dependencies, so the suite runs in any JS runtime. */

export class AssertionError extends Error {
  override readonly name = "AssertionError";
}

const show = (value: unknown): string => {
  if (value instanceof Uint8Array) return `Uint8Array(${value.byteLength})`;
  if (typeof value === "string") return JSON.stringify(value.length > 300 ? `${value.slice(0, 300)}…` : value);
  try {
    return JSON.stringify(value, (_, v) => (typeof v === "bigint" ? `${v}n` : v)) ?? String(value);
  } catch {
    return String(value);
  }
};

export function ok(condition: unknown, message = "expected a truthy value"): asserts condition {
  if (!condition) throw new AssertionError(message);
}

export function equal<T>(actual: T, expected: T, message?: string): void {
  if (!Object.is(actual, expected)) {
    throw new AssertionError(`${message ? `${message}: ` : ""}expected ${show(expected)}, got ${show(actual)}`);
  }
}

export function deepEqual(actual: unknown, expected: unknown, message?: string): void {
  if (!same(actual, expected)) {
    throw new AssertionError(`${message ? `${message}: ` : ""}expected ${show(expected)}, got ${show(actual)}`);
  }
}

/** Every field of `expected` is in `actual`, deep-equal (other fields of `actual` aside). */
export function fieldsEqual(actual: unknown, expected: Readonly<Record<string, unknown>>, message?: string): void {
  const subset =
    actual && typeof actual === "object"
      ? Object.fromEntries(Object.keys(expected).map((k) => [k, (actual as Record<string, unknown>)[k]]))
      : actual;
  deepEqual(subset, expected, message);
}

export function bytesEqual(actual: Uint8Array, expected: Uint8Array, message = "bytes differ"): void {
  if (actual.byteLength !== expected.byteLength) {
    throw new AssertionError(`${message}: expected ${expected.byteLength} bytes, got ${actual.byteLength}`);
  }
  for (let i = 0; i < actual.byteLength; i++) {
    if (actual[i] !== expected[i]) throw new AssertionError(`${message}: first difference at byte ${i}`);
  }
}

export function match(actual: string, pattern: RegExp, message?: string): void {
  if (!pattern.test(actual))
    throw new AssertionError(`${message ? `${message}: ` : ""}${show(actual)} does not match ${pattern}`);
}

type ErrorClass = abstract new (...args: never[]) => Error;

/** Awaits `fn`, expecting it to reject with an instance of `errorClass`; returns the error. */
export async function rejects<E extends ErrorClass>(
  fn: () => Promise<unknown>,
  errorClass: E,
  messagePattern?: RegExp,
): Promise<InstanceType<E>> {
  let result: unknown;
  try {
    result = await fn();
  } catch (error) {
    if (!(error instanceof errorClass)) {
      throw new AssertionError(
        `expected a ${errorClass.name}, got ${error instanceof Error ? `${error.name}: ${error.message}` : show(error)}`,
      );
    }
    if (messagePattern && !messagePattern.test((error as Error).message)) {
      throw new AssertionError(`error message ${show((error as Error).message)} does not match ${messagePattern}`);
    }
    return error as InstanceType<E>;
  }
  throw new AssertionError(`expected a ${errorClass.name}, but it resolved with ${show(result)}`);
}

/** Expects `fn` to throw synchronously or reject with an instance of `errorClass`. */
export async function throws<E extends ErrorClass>(fn: () => unknown, errorClass: E): Promise<InstanceType<E>> {
  return rejects(async () => fn(), errorClass);
}

/** Resolves with `promise`'s outcome, or fails the test if it takes longer than `ms` (a hang guard, not a speed check). */
export async function settlesWithin<T>(
  promise: Promise<T>,
  ms: number,
  what: string,
): Promise<PromiseSettledResult<T>> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new AssertionError(`${what} did not settle within ${ms} ms (hang)`)), ms);
  });
  try {
    const [result] = await Promise.race([Promise.allSettled([promise]), guard]);
    return result;
  } finally {
    clearTimeout(timer);
  }
}

function same(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (a instanceof Uint8Array && b instanceof Uint8Array) {
    return a.byteLength === b.byteLength && a.every((x, i) => x === b[i]);
  }
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => same(x, b[i]));
  if (a && b && typeof a === "object" && typeof b === "object") {
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k) => same((a as never)[k], (b as never)[k]));
  }
  return false;
}
