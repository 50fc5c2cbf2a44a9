/** What the validation cases share: input the SDK refuses before any request. */
import type { CreateSandboxOptions } from "@sbx/core";
import { equal, rejects } from "../assert.js";
import type { Harness } from "../target.js";

/**
 * `invalid(fn, pattern?)` asserts `fn` fails with InvalidError (its message matching `pattern`)
 * and, on the fake, that no request was sent: only the fake records calls, so only it can count them.
 */
export function expectInvalid(h: Harness): (fn: () => Promise<unknown>, pattern?: RegExp) => Promise<void> {
  const fake = h.target.fake;
  return async (fn, pattern) => {
    const before = fake?.calls.length;
    const error = await rejects(fn, h.sdk.InvalidError, pattern);
    equal(error.code, "invalid");
    if (fake) equal(fake.calls.length, before, "no request may be sent for invalid input");
  };
}

/** `create(options)`: a call that creates a sandbox of this run with `options`, for `invalid`. */
export const createCall =
  (h: Harness) =>
  (options: CreateSandboxOptions): (() => Promise<unknown>) =>
  () =>
    h.client().sandboxes.create(h.createOptions(options));
