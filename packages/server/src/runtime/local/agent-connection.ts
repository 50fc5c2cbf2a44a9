/**
 * The server's end of a sandbox agent's control FIFOs: JSON-line requests down `ctl`, events
 * up `events`. Answers are matched to calls by unguessable ids; a call gives up at its deadline
 * or abort, and an answer that comes after that is undone; watch events go to their listener.
 * Every other event (the agent's readiness, its processes) goes to the sandbox.
 */
import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import { RuntimeDeadlineError, RuntimeFsError } from "@sbx/server-kit";
import { type AgentEvent, EventLines, parseAgentEvent } from "./agent-events.js";
import type { AgentCallOptions, WatchListener } from "./agent-filesystem.js";

/** Answers the agent gave after their caller gave up, still to undo; kept at most this many. */
const MAX_ABANDONED_CALLS = 1024;

/** The agent's events that are not answers to calls or watches. */
export type SandboxEvent = Exclude<AgentEvent, { ev: "fs" } | { ev: "watch" }>;

export interface AgentConnectionOptions {
  /** How long a call waits for its answer before failing with a RuntimeDeadlineError. */
  readonly callTimeoutMs: number;
  /** True once the sandbox is being destroyed: calls are refused from then on. */
  readonly ended: () => boolean;
  /** Receives every event that is not an answer to a call or a watch. */
  readonly onEvent: (event: SandboxEvent) => void;
}

export class AgentConnection {
  readonly #options: AgentConnectionOptions;
  #events: Socket | undefined;
  #control: Socket | undefined;
  readonly #fsCalls = new Map<string, { resolve: (result: unknown) => void; reject: (error: Error) => void }>();
  /** Calls given up on (aborted or past the deadline) whose successful answer must be undone. */
  readonly #abandoned = new Map<string, (answer: unknown) => void>();
  readonly #watchers = new Map<string, WatchListener>();

  constructor(options: AgentConnectionOptions) {
    this.#options = options;
  }

  /** Starts reading `events` and writing requests to `control`. */
  connect(events: Socket, control: Socket): void {
    this.#events = events;
    this.#control = control;
    this.#listen(events);
  }

  /** Closes both FIFOs. */
  disconnect(): void {
    this.#events?.destroy();
    this.#control?.destroy();
  }

  #listen(events: Socket): void {
    // Untrusted: the sandbox's own code can write to this pipe (see agent-events.ts).
    const lines = new EventLines();
    events.setEncoding("utf8");
    events.on("data", (text: string) => {
      for (const line of lines.push(text)) {
        const event = line ? parseAgentEvent(line) : undefined;
        if (event) this.#onEvent(event);
      }
    });
    events.on("error", () => {});
  }

  #onEvent(event: AgentEvent): void {
    switch (event.ev) {
      case "fs": {
        const call = this.#fsCalls.get(event.id);
        if (!call) {
          const undo = this.#abandoned.get(event.id);
          this.#abandoned.delete(event.id);
          if (undo && !event.error) undo(event.result);
          return;
        }
        if (event.error) call.reject(new RuntimeFsError(event.error.kind, event.error.message));
        else call.resolve(event.result);
        return;
      }
      case "watch":
        this.#watchers.get(event.id)?.events(event.events);
        return;
      default:
        this.#options.onEvent(event);
        return;
    }
  }

  /** One JSON-line request to the agent. */
  send(message: object): void {
    this.#control?.write(`${JSON.stringify(message)}\n`);
  }

  /** Calls waiting for the agent, and answers still to undo (for tests: nothing may pile up). */
  get pending(): { readonly waiting: number; readonly abandoned: number } {
    return { waiting: this.#fsCalls.size, abandoned: this.#abandoned.size };
  }

  // Call ids are random: sandboxed code can write the agent's event pipe, and must not be
  // able to guess which answer the server waits for next.
  call(
    op: string,
    fields: Record<string, unknown>,
    { signal, undo }: AgentCallOptions = {},
    id = `c${randomBytes(12).toString("hex")}`,
  ): Promise<unknown> {
    if (this.#options.ended()) return Promise.reject(new RuntimeFsError("other", "the sandbox has ended"));
    if (signal?.aborted) return Promise.reject(signal.reason);
    const limitMs = this.#options.callTimeoutMs;
    return new Promise((resolve, reject) => {
      const settle = () => {
        clearTimeout(deadline);
        signal?.removeEventListener("abort", onAbort);
        this.#fsCalls.delete(id);
      };
      // Given up: the entry goes now; an answer that still comes is undone (see #onEvent).
      const giveUp = (error: unknown) => {
        settle();
        if (undo) this.#abandon(id, undo);
        reject(error);
      };
      const onAbort = () => giveUp(signal?.reason);
      const deadline = setTimeout(
        () =>
          giveUp(
            new RuntimeDeadlineError(
              `the sandbox did not answer ${op} within ${limitMs / 1000} s (it may be overloaded or stopped)`,
            ),
          ),
        limitMs,
      );
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#fsCalls.set(id, {
        resolve: (result) => {
          settle();
          resolve(result);
        },
        reject: (error) => {
          settle();
          reject(error);
        },
      });
      this.send({ ...fields, op, id });
    });
  }

  #abandon(id: string, undo: (answer: unknown) => void): void {
    // An agent that never answers must not grow this without end: the oldest are forgotten.
    if (this.#abandoned.size >= MAX_ABANDONED_CALLS) {
      const oldest = this.#abandoned.keys().next().value;
      if (oldest !== undefined) this.#abandoned.delete(oldest);
    }
    this.#abandoned.set(id, undo);
  }

  /** Starts the agent watch `id`: events go to `listener` until `stop()` or the sandbox ends. */
  watch(
    id: string,
    fields: Record<string, unknown>,
    listener: WatchListener,
  ): { answered: Promise<unknown>; stop(): void } {
    this.#watchers.set(id, listener);
    return {
      answered: this.call("watch", fields, {}, id),
      stop: () => {
        if (this.#watchers.delete(id)) this.send({ op: "unwatch", id });
      },
    };
  }

  /** The sandbox has ended: every waiting call fails, and every watch ends. */
  sandboxEnded(): void {
    for (const call of [...this.#fsCalls.values()]) call.reject(new RuntimeFsError("other", "the sandbox has ended"));
    this.#fsCalls.clear();
    this.#abandoned.clear();
    for (const watcher of this.#watchers.values()) watcher.end();
    this.#watchers.clear();
  }
}
