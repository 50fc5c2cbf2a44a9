// EffectRunner.iterate: a Stream as an async iterator, with the cancellation the Promise API
// relies on (a pull in flight stopped at once by return(), by the caller's signal, by close()).
import * as Effect from "effect/Effect";
import * as Stream from "effect/Stream";
import { describe, expect, it } from "vitest";
import { resolveConfig } from "./config.js";
import { EffectRunner } from "./effect-runner.js";
import { AbortedError, ClientClosedError, NotFoundError } from "./errors.js";
import type { RpcClients } from "./rpc.js";

const runner = () => new EffectRunner({} as RpcClients, resolveConfig({}));

/** 1, 2, then nothing ever again, with its finalizer recorded. */
function quietAfterTwo(log: string[]) {
  return Stream.concat(Stream.make(1, 2), Stream.never).pipe(Stream.ensuring(Effect.sync(() => log.push("released"))));
}

describe("EffectRunner.iterate", () => {
  it("yields every element, in order, then ends", async () => {
    const seen: number[] = [];
    for await (const n of runner().iterate(Stream.range(1, 1000))) seen.push(n);
    expect(seen).toEqual(Array.from({ length: 1000 }, (_, i) => i + 1));
  });

  it("return() stops a pull in flight at once and releases the stream", async () => {
    const log: string[] = [];
    const iterator = runner().iterate(quietAfterTwo(log));
    expect((await iterator.next()).value).toBe(1);
    expect((await iterator.next()).value).toBe(2);
    const pending = iterator.next(); // waits forever on the stream
    expect(await iterator.return(undefined)).toEqual({ done: true, value: undefined });
    expect(await pending).toEqual({ done: true, value: undefined });
    expect(log).toEqual(["released"]);
    expect(await iterator.next()).toEqual({ done: true, value: undefined });
  });

  it("a break releases the stream", async () => {
    const log: string[] = [];
    for await (const n of runner().iterate(quietAfterTwo(log))) if (n === 2) break;
    expect(log).toEqual(["released"]);
  });

  it("the caller's signal aborts a pull in flight with AbortedError", async () => {
    const log: string[] = [];
    const controller = new AbortController();
    const iterator = runner().iterate(quietAfterTwo(log), controller.signal);
    await iterator.next();
    await iterator.next();
    const pending = iterator.next();
    controller.abort();
    await expect(pending).rejects.toBeInstanceOf(AbortedError);
    expect(log).toEqual(["released"]);
  });

  it("closing the client ends a pull in flight with ClientClosedError", async () => {
    const client = runner();
    const iterator = client.iterate(quietAfterTwo([]));
    await iterator.next();
    await iterator.next();
    const pending = iterator.next();
    await client.close();
    await expect(pending).rejects.toBeInstanceOf(ClientClosedError);
    await expect(client.iterate(Stream.make(1)).next()).rejects.toBeInstanceOf(ClientClosedError);
  });

  it("a failure is thrown as the typed error, after what came before it", async () => {
    const log: string[] = [];
    const failing = Stream.concat(Stream.make(1), Stream.fail(new NotFoundError("gone"))).pipe(
      Stream.ensuring(Effect.sync(() => log.push("released"))),
    );
    const seen: number[] = [];
    await expect(
      (async () => {
        for await (const n of runner().iterate(failing)) seen.push(n);
      })(),
    ).rejects.toBeInstanceOf(NotFoundError);
    expect(seen).toEqual([1]);
    expect(log).toEqual(["released"]);
  });
});
