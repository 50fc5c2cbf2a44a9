/**
 * What a transport carries for the clients built over it (the RPC clients' factory, a port
 * dialer, a tunnel channel): a function under a global symbol, not enumerable, so the
 * transport works as before for anything else that uses it. Browser-safe.
 */

/** `transport`, carrying `value` under `key`. */
export function attachTo<T extends object>(transport: T, key: symbol, value: unknown): T {
  Object.defineProperty(transport, key, { value, enumerable: false });
  return transport;
}

/** The function `attachTo` left on `transport` under `key`, if it did. */
export function attachedFunction<F extends (...args: never[]) => unknown>(
  transport: unknown,
  key: symbol,
): F | undefined {
  if (typeof transport !== "object" || transport === null) return undefined;
  const value = (transport as { [key]?: unknown })[key];
  return typeof value === "function" ? (value as F) : undefined;
}
