/**
 * The server's end of a sandbox agent's control FIFOs: Request lines down `ctl`, Event lines up
 * `events` (the agent protocol, proto/sbx/agent/v1/agent.proto, in its JSON form). Answers are
 * matched to calls by unguessable ids; a call gives up at its deadline or abort, and an answer
 * that comes after that is undone; watch events go to their listener. Every other event (the
 * agent's readiness, its processes) goes to the sandbox.
 */
import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import type { FileErrorKindJson, RequestJson } from "@sbx/proto/agent";
import { RuntimeDeadlineError, RuntimeFsError, type RuntimeFsErrorKind } from "@sbx/server-kit";
import { type AgentEvent, EventLines, parseAgentEvent } from "./agent-events.js";
import {
  type AgentCallOptions,
  type FileAnswer,
  type FileCall,
  type WatchListener,
  watchEvents,
} from "./agent-filesystem.js";

/** Answers the agent gave after their caller gave up, still to undo; kept at most this many. */
const MAX_ABANDONED_CALLS = 1024;

/**
 * Requests written but not taken by the agent (its control FIFO full) past which new calls and
 * execs are refused: an agent that stops reading (stopped, or held up by its own sandbox's code,
 * which can stop a child of the agent's between fork and exec) must not make the server keep
 * every request sent to it. More than any one request (an exec's arguments and environment,
 * ~2 MiB); what follows a request already taken (a release, a kill) is always sent.
 */
const MAX_BACKLOG_BYTES = 4 * 1024 * 1024;

export interface AgentConnectionOptions {
  /** How long a call waits for its answer before failing with a RuntimeDeadlineError. */
  readonly callTimeoutMs: number;
  /** True once the sandbox is being destroyed: calls are refused from then on. */
  readonly ended: () => boolean;
  /** Receives every event that is not an answer to a call or a watch. */
  readonly onEvent: (event: AgentEvent) => void;
  /** Hears of each request sent. */
  readonly onSend?: (() => void) | undefined;
}

const ERROR_KINDS: Record<FileErrorKindJson, RuntimeFsErrorKind> = {
  FILE_ERROR_KIND_UNSPECIFIED: "other",
  FILE_ERROR_KIND_NOT_FOUND: "not_found",
  FILE_ERROR_KIND_IS_A_DIRECTORY: "is_a_directory",
  FILE_ERROR_KIND_NOT_A_DIRECTORY: "not_a_directory",
  FILE_ERROR_KIND_DIRECTORY_NOT_EMPTY: "directory_not_empty",
  FILE_ERROR_KIND_ALREADY_EXISTS: "already_exists",
  FILE_ERROR_KIND_PERMISSION_DENIED: "permission_denied",
  FILE_ERROR_KIND_NO_SPACE: "no_space",
};

/** The failure of a request not sent because the agent is behind (see MAX_BACKLOG_BYTES). */
export const agentBehind = () =>
  new RuntimeDeadlineError(
    "the sandbox's agent has not taken the requests sent to it (it may be overloaded or stopped)",
  );

export class AgentConnection {
  readonly #options: AgentConnectionOptions;
  #events: Socket | undefined;
  #control: Socket | undefined;
  readonly #fsCalls = new Map<string, { resolve: (answer: FileAnswer) => void; reject: (error: Error) => void }>();
  /** Calls given up on (aborted or past the deadline) whose successful answer must be undone. */
  readonly #abandoned = new Map<string, (answer: FileAnswer) => void>();
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
    // Untrusted: the sandbox's own code could write to this pipe (see agent-events.ts).
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
    const id = event.id ?? "";
    if (event.file) {
      const { error, ...answer } = event.file;
      const call = this.#fsCalls.get(id);
      if (!call) {
        const undo = this.#abandoned.get(id);
        this.#abandoned.delete(id);
        if (undo && !error) undo(answer);
        return;
      }
      if (error)
        call.reject(new RuntimeFsError(ERROR_KINDS[error.kind ?? "FILE_ERROR_KIND_UNSPECIFIED"], error.message ?? ""));
      else call.resolve(answer);
    } else if (event.watch) {
      this.#watchers.get(id)?.events(watchEvents(event.watch));
    } else {
      this.#options.onEvent(event);
    }
  }

  /** One request line to the agent. */
  send(request: RequestJson): void {
    this.#options.onSend?.();
    this.#control?.write(`${JSON.stringify(request)}\n`);
  }

  /** Bytes of requests written but not yet taken by the agent (held by the server). */
  get backlog(): number {
    return this.#control?.writableLength ?? 0;
  }

  /** Whether the agent has not taken what was sent to it (see MAX_BACKLOG_BYTES): a new request would only pile up. */
  get behind(): boolean {
    return this.backlog > MAX_BACKLOG_BYTES;
  }

  /** Calls waiting for the agent, and answers still to undo (for tests: nothing may pile up). */
  get pending(): { readonly waiting: number; readonly abandoned: number } {
    return { waiting: this.#fsCalls.size, abandoned: this.#abandoned.size };
  }

  // Call ids are random: sandboxed code could write the agent's event pipe, and must not be
  // able to guess which answer the server waits for next.
  call(
    request: FileCall,
    { signal, undo, followUp }: AgentCallOptions = {},
    id = `c${randomBytes(12).toString("hex")}`,
  ): Promise<FileAnswer> {
    const op = Object.keys(request)[0] ?? "call";
    if (this.#options.ended()) return Promise.reject(new RuntimeFsError("other", "the sandbox has ended"));
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.behind && !followUp) return Promise.reject(agentBehind());
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
        resolve: (answer) => {
          settle();
          resolve(answer);
        },
        reject: (error) => {
          settle();
          reject(error);
        },
      });
      this.send({ ...request, id });
    });
  }

  #abandon(id: string, undo: (answer: FileAnswer) => void): void {
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
    watch: NonNullable<RequestJson["watch"]>,
    listener: WatchListener,
  ): { answered: Promise<FileAnswer>; stop(): void } {
    this.#watchers.set(id, listener);
    return {
      answered: this.call({ watch }, {}, id),
      stop: () => {
        if (this.#watchers.delete(id)) this.send({ id, unwatch: {} });
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
