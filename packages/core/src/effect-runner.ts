/**
 * Effect inside, Promise outside: `EffectRunner` runs the Effect API's effects (as Promises)
 * and streams (as async iterators) for the Promise API's objects. It holds the client's
 * `SbxConnection` (a plain value, nothing to acquire or release), runs each effect with it and
 * the caller's AbortSignal, and throws the typed error (never an Effect wrapper). Closing it
 * (the client's `close()`) cancels everything still running. Not an Effect `Runtime`: effects
 * run with `Effect.runPromiseExit`, which keeps Effect's runtime machinery out of bundles.
 */
import * as Cause from "effect/Cause";
import * as Context from "effect/Context";
import * as Effect from "effect/Effect";
import * as Exit from "effect/Exit";
import * as Pull from "effect/Pull";
import * as Scope from "effect/Scope";
import * as Stream from "effect/Stream";
import type { ResolvedConfig } from "./config.js";
import { AbortedError, ClientClosedError, InternalError, SandboxError } from "./errors.js";
import type { RawHttpClient } from "./raw-routes.js";
import { makeConnection, type PortAccess, type RpcClients, SbxConnection } from "./rpc.js";

export class EffectRunner {
  readonly #context: Context.Context<SbxConnection>;
  readonly #closing = new AbortController();
  #closed = false;

  readonly #rawHttp: RawHttpClient | undefined;

  constructor(clients: RpcClients, config: ResolvedConfig, rawHttp?: RawHttpClient, ports?: PortAccess) {
    this.#rawHttp = rawHttp;
    this.#context = Context.make(SbxConnection, makeConnection(clients, config, rawHttp, ports));
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Runs `effect`, rejecting with its typed error; `signal` (or closing the client) cancels it. */
  async run<A>(effect: Effect.Effect<A, SandboxError, SbxConnection>, signal?: AbortSignal): Promise<A> {
    const combined = this.#signalFor(signal);
    const exit = await Effect.runPromiseExit(Effect.provideContext(effect, this.#context), { signal: combined });
    if (Exit.isSuccess(exit)) return exit.value;
    throw this.#errorOf(exit.cause, signal);
  }

  /**
   * Runs `stream` as an async iterator; errors and cancellation as for `run`. Each `next()`
   * runs one pull of the stream; `return()` (a `break`, a closed watch) interrupts a pull in
   * flight at once and releases the stream's resources (its open request) before resolving.
   * Written here rather than with `Stream.toAsyncIterable`, which brings Effect's logger and
   * fiber machinery (~7 KiB minified) into every browser bundle.
   */
  iterate<A>(stream: Stream.Stream<A, SandboxError, SbxConnection>, signal?: AbortSignal): AsyncGenerator<A> {
    const scope = Scope.makeUnsafe();
    const context = Context.add(this.#context, Scope.Scope, scope);
    const stopped = new AbortController();
    let pull: Effect.Effect<readonly A[], SandboxError | Cause.Done> | undefined;
    let batch: Iterator<A> | undefined;
    let inFlight: Promise<unknown> | undefined;
    let ended: Promise<IteratorResult<A>> | undefined;
    const done: IteratorResult<A> = { done: true, value: undefined };
    const end = (): Promise<IteratorResult<A>> => {
      ended ??= (async () => {
        stopped.abort();
        await inFlight?.catch(() => {});
        await Effect.runPromise(Scope.close(scope, Exit.void));
        return done;
      })();
      return ended;
    };
    const next = async (): Promise<IteratorResult<A>> => {
      if (ended) return ended;
      const item = batch?.next();
      if (item && !item.done) return item;
      let exit: Exit.Exit<readonly A[], SandboxError | Cause.Done>;
      try {
        const combined = AbortSignal.any([this.#signalFor(signal), stopped.signal]);
        pull ??= await Effect.runPromise(Effect.provideContext(Stream.toPull(stream), context));
        const running = Effect.runPromiseExit(pull, { signal: combined });
        inFlight = running;
        exit = await running;
      } catch (error) {
        await end();
        throw this.#normalize(error, signal);
      }
      if (Exit.isSuccess(exit)) {
        batch = exit.value[Symbol.iterator]();
        return next();
      }
      if (ended) return ended; // return() interrupted this pull
      await end();
      if (Pull.isDoneCause(exit.cause)) return done;
      throw this.#errorOf(exit.cause as Cause.Cause<SandboxError>, signal);
    };
    const iterator: AsyncGenerator<A> = {
      next,
      return: end,
      async throw(error: unknown) {
        await end();
        throw error;
      },
      [Symbol.asyncIterator]: () => iterator,
      [Symbol.asyncDispose]: async () => {
        await end();
      },
    };
    return iterator;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort(new ClientClosedError("the client was closed"));
    this.#rawHttp?.close?.();
  }

  #signalFor(signal: AbortSignal | undefined): AbortSignal {
    if (this.#closed) throw new ClientClosedError("the client is closed");
    if (signal?.aborted) throw this.#abortError(signal);
    return signal ? AbortSignal.any([signal, this.#closing.signal]) : this.#closing.signal;
  }

  #abortError(signal: AbortSignal | undefined): SandboxError {
    if (this.#closed && !signal?.aborted) return new ClientClosedError("the client was closed");
    return new AbortedError("the operation was aborted", { cause: signal?.reason });
  }

  #errorOf(cause: Cause.Cause<SandboxError>, signal: AbortSignal | undefined): SandboxError {
    const failure = Cause.findErrorOption(cause);
    if (failure._tag === "Some") return failure.value;
    if (Cause.hasInterrupts(cause)) return this.#abortError(signal);
    return this.#normalize(Cause.squash(cause), signal);
  }

  #normalize(error: unknown, signal: AbortSignal | undefined): SandboxError {
    if (error instanceof SandboxError) return error;
    if (signal?.aborted || this.#closed) return this.#abortError(signal);
    const message = error instanceof Error ? error.message : String(error);
    return new InternalError(`unexpected client error: ${message}`, { cause: error });
  }
}
