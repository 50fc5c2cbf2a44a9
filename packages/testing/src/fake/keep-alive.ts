/**
 * Keeps the host process alive while a caller awaits the fake. The fake's own timers (process
 * sleeps, sandbox and command timeouts) are unref'd so that an idle fake never holds a script
 * open; but then a script awaiting `sb.run("sleep 1")` over the in-process transport has
 * nothing keeping the event loop alive, and Node exits with code 13 (unsettled top-level
 * await). So one ref'd timer is held while any call is in flight, as an open socket to a real
 * server would be.
 */
import type { Interceptor } from "@connectrpc/connect";

/** Long enough never to fire; the timer exists only to be ref'd. */
const HOLD_MS = 2 ** 31 - 1;

export class KeepAlive {
  #inFlight = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  /** Counts one call in flight; the returned function ends it (calling it again does nothing). */
  hold(): () => void {
    this.#inFlight++;
    if (!this.#closed && this.#timer === undefined) this.#timer = setInterval(() => {}, HOLD_MS);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inFlight--;
      if (this.#inFlight === 0) this.#drop();
    };
  }

  /** The fake is closed: calls still in flight no longer hold the process. */
  close(): void {
    this.#closed = true;
    this.#drop();
  }

  #drop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Holds from the call's start until its response (a stream: its last message) or its abort. */
  readonly interceptor: Interceptor = (next) => async (request) => {
    const release = this.hold();
    request.signal.addEventListener("abort", release, { once: true });
    let response: Awaited<ReturnType<typeof next>>;
    try {
      response = await next(request);
    } catch (error) {
      release();
      throw error;
    }
    if (!response.stream) {
      release();
      return response;
    }
    return { ...response, message: releasingAtEnd(response.message, release) } as typeof response;
  };
}

async function* releasingAtEnd<M>(messages: AsyncIterable<M>, release: () => void): AsyncGenerator<M> {
  try {
    yield* messages;
  } finally {
    release();
  }
}
