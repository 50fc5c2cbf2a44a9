import * as Clock from "effect/Clock";
import * as Effect from "effect/Effect";
import { type SandboxError, TimeoutError } from "./errors.js";
import { SbxConnection } from "./rpc.js";

/**
 * Waits by long-polling: asks the server to hold each call up to `longPollMs` (less when the
 * caller's deadline is nearer) and asks again until `done`. Without `timeoutMs` it waits as
 * long as the thing waited on runs (which the server bounds by the sandbox's lifetime).
 */
export const longPoll = <T extends { readonly done: boolean }>(
  what: string,
  poll: (holdMs: number) => Effect.Effect<T, SandboxError, SbxConnection>,
  timeoutMs?: number,
): Effect.Effect<T, SandboxError, SbxConnection> =>
  Effect.gen(function* () {
    const { config } = yield* SbxConnection;
    const start = yield* Clock.currentTimeMillis;
    const deadline = timeoutMs === undefined ? undefined : start + timeoutMs;
    for (;;) {
      const now = yield* Clock.currentTimeMillis;
      const remaining = deadline === undefined ? config.longPollMs : deadline - now;
      const result = yield* poll(Math.max(0, Math.min(config.longPollMs, remaining)));
      if (result.done) return result;
      if (deadline !== undefined && (yield* Clock.currentTimeMillis) >= deadline) {
        return yield* Effect.fail(new TimeoutError(`${what} did not finish within ${timeoutMs} ms`));
      }
    }
  });

/** Per-call settings for one long-poll request held up to `holdMs` by the server. */
export const longPollSettings = (holdMs: number) => ({
  attemptTimeoutMs: holdMs + 15_000,
  timeoutMs: holdMs + 60_000,
});
