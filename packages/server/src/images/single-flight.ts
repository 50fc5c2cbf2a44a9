/**
 * In-process single-flight: work keyed by a digest that everyone asking for the same key
 * while it runs shares (one download and unpack of a layer for all the pulls that need it).
 * Each joiner gets the flight's events (the latest one at once when it joins late) and may
 * leave with its own abort signal; the work itself is aborted only when every joiner has left,
 * and the last one out hears of its abort once the work has stopped.
 */

interface Flight<T, E> {
  readonly promise: Promise<T>;
  readonly controller: AbortController;
  readonly listeners: Set<{ onEvent: (event: E) => void }>;
  last: E | undefined;
}

export interface JoinOptions<E> {
  readonly signal?: AbortSignal | undefined;
  readonly onEvent?: ((event: E) => void) | undefined;
}

export type FlightWork<T, E> = (signal: AbortSignal, emit: (event: E) => void) => Promise<T>;

export class SingleFlight<T, E> {
  readonly #flights = new Map<string, Flight<T, E>>();

  /** Keys with work under way. */
  get keys(): readonly string[] {
    return [...this.#flights.keys()];
  }

  /** Joins the flight for `key`, starting `work` when none runs (or the one running was abandoned). */
  run(key: string, work: FlightWork<T, E>, options: JoinOptions<E> = {}): Promise<T> {
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    let flight = this.#flights.get(key);
    if (flight === undefined || flight.controller.signal.aborted) flight = this.#start(key, work);
    const joined = flight;
    const listener = { onEvent: options.onEvent ?? (() => {}) };
    joined.listeners.add(listener);
    if (joined.last !== undefined) listener.onEvent(joined.last);
    return new Promise<T>((resolve, reject) => {
      let left = false;
      const leave = () => {
        left = true;
        joined.listeners.delete(listener);
        signal?.removeEventListener("abort", onAbort);
      };
      const onAbort = () => {
        leave();
        if (joined.listeners.size > 0) {
          reject(signal?.reason);
          return;
        }
        // The last one out stops the work and waits for it to clean up (what it wrote is gone
        // when the caller hears of the abort).
        joined.controller.abort(signal?.reason);
        const settled = () => reject(signal?.reason);
        joined.promise.then(settled, settled);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      joined.promise.then(
        (value) => {
          if (left) return;
          leave();
          resolve(value);
        },
        (error: unknown) => {
          if (left) return;
          leave();
          reject(error);
        },
      );
    });
  }

  #start(key: string, work: FlightWork<T, E>): Flight<T, E> {
    const controller = new AbortController();
    const flight: Flight<T, E> = {
      controller,
      listeners: new Set(),
      last: undefined,
      promise: Promise.resolve()
        .then(() =>
          work(controller.signal, (event) => {
            flight.last = event;
            for (const listener of flight.listeners) listener.onEvent(event);
          }),
        )
        .finally(() => {
          if (this.#flights.get(key) === flight) this.#flights.delete(key);
        }),
    };
    flight.promise.catch(() => {}); // a flight everyone left still settles: not unhandled
    this.#flights.set(key, flight);
    return flight;
  }
}
