/**
 * Effect inside, Promise outside: the client owns a `ManagedRuntime` holding its RPC
 * service, runs effects on it with the caller's AbortSignal, and throws the typed error
 * (never an Effect wrapper). Closing the client cancels everything still running.
 */
import type { Transport } from "@connectrpc/connect";
import * as Cause from "effect/Cause";
import * as Context from "effect/Context";
import * as Effect from "effect/Effect";
import * as Exit from "effect/Exit";
import * as Layer from "effect/Layer";
import * as ManagedRuntime from "effect/ManagedRuntime";
import * as Stream from "effect/Stream";
import type { ResolvedConfig } from "./config.js";
import { AbortedError, ClientClosedError, InternalError, SandboxError } from "./errors.js";
import type { LocalFiles } from "./filesystem.js";
import type { RawHttpClient } from "./raw-http.js";
import { makeRpc, SbxRpc } from "./rpc.js";

export class ClientRuntime {
  readonly #runtime: ManagedRuntime.ManagedRuntime<SbxRpc, never>;
  readonly #context: Context.Context<SbxRpc>;
  readonly #closing = new AbortController();
  #closed = false;

  constructor(
    transport: Transport,
    readonly config: ResolvedConfig,
    readonly rawHttp?: RawHttpClient,
    readonly localFiles?: LocalFiles,
  ) {
    // The services are plain values, built once, so streams can run with them directly.
    this.#context = Context.make(SbxRpc, makeRpc(transport, config, rawHttp));
    this.#runtime = ManagedRuntime.make(Layer.succeedContext(this.#context));
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Runs `effect`, rejecting with its typed error; `signal` (or closing the client) cancels it. */
  async run<A>(effect: Effect.Effect<A, SandboxError, SbxRpc>, signal?: AbortSignal): Promise<A> {
    const combined = this.#signalFor(signal);
    const exit = await this.#runtime.runPromiseExit(effect, { signal: combined });
    if (Exit.isSuccess(exit)) return exit.value;
    throw this.#errorOf(exit.cause, signal);
  }

  /** Runs `stream` as an async iterable; errors and cancellation as for `run`. */
  async *iterate<A>(stream: Stream.Stream<A, SandboxError, SbxRpc>, signal?: AbortSignal): AsyncGenerator<A> {
    const combined = this.#signalFor(signal);
    const interruptible = stream.pipe(
      Stream.interruptWhen(
        Effect.callback<never, SandboxError>((resume) => {
          const onAbort = () => resume(Effect.fail(this.#abortError(signal)));
          if (combined.aborted) onAbort();
          else combined.addEventListener("abort", onAbort, { once: true });
        }),
      ),
    );
    try {
      yield* Stream.toAsyncIterableWith(interruptible, this.#context);
    } catch (error) {
      throw this.#normalize(error, signal);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort(new ClientClosedError("the client was closed"));
    await this.#runtime.dispose();
    this.rawHttp?.close?.();
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
