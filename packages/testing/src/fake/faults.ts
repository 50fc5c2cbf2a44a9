/**
 * Fault injection and observation as server-side Connect interceptors, so they apply the
 * same in-process and over a port: failNext, cut streams, latency, auth, and the call log.
 */
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import {
  FilesystemService,
  ImageService,
  NetworkService,
  ProcessService,
  RetryInfoSchema,
  SandboxService,
} from "@sbx/proto";
import type { ImageStoreErrorKind } from "@sbx/server-kit";
import type { RawCallPlan, RawMethod } from "@sbx/server-kit/raw-routes";

export type FaultCode =
  | "canceled"
  | "unknown"
  | "invalid_argument"
  | "deadline_exceeded"
  | "not_found"
  | "already_exists"
  | "permission_denied"
  | "resource_exhausted"
  | "failed_precondition"
  | "aborted"
  | "out_of_range"
  | "unimplemented"
  | "internal"
  | "unavailable"
  | "data_loss"
  | "unauthenticated";

/** A failure of the call itself, with a status code. */
export interface FailNextCodeOptions {
  readonly code: FaultCode;
  /** How many calls fail (default 1). */
  readonly times?: number;
  readonly message?: string;
  /** Attach a RetryInfo detail asking the client to wait this long. */
  readonly retryAfterMs?: number;
  /**
   * Perform the call, then fail: a response lost after the server acted (a stream runs to its
   * end first, so a Watch fails only once it ends).
   */
  readonly afterApplying?: boolean;
}

/**
 * A failure of the fake's image store, as the server's store fails (for "pullImage": the
 * next pulls, whether by PullImage or by a create that pulls; for "importImage": the next
 * imports). The engine turns it into the client's typed error, as it does the server's.
 */
export interface FailNextImageOptions {
  readonly imageError: ImageStoreErrorKind;
  /** How many pulls (or imports) fail (default 1). */
  readonly times?: number;
  /** Default: a sentence naming the image and the registry, as the server's store says. */
  readonly message?: string;
}

export type FailNextOptions = FailNextCodeOptions | FailNextImageOptions;

const IMAGE_ERRORS: readonly ImageStoreErrorKind[] = [
  "not-found",
  "authentication",
  "connection",
  "digest-mismatch",
  "invalid",
  "unsupported",
  "quota",
  "in-use",
  "timeout",
];

export interface CutStreamsOptions {
  /**
   * The next output streams (ReadOutput) and file reads (ReadFile) are cut: each fails with
   * UNAVAILABLE after sending this many data bytes. A function is asked once per cut stream
   * (e.g. for random cut points).
   */
  readonly afterBytes: number | (() => number);
  /** How many streams are cut (default 1). */
  readonly times?: number;
}

export interface RecordedCall {
  readonly method: RpcMethodName;
  /** The request message (unary calls and server-streaming calls). */
  readonly request: unknown;
}

/**
 * An RPC's name as the services define it (lowerCamelCase), e.g. "createSandbox"; and
 * "importImage", the raw route that has no RPC.
 */
type LocalMethodName =
  | keyof typeof SandboxService.method
  | keyof typeof ProcessService.method
  | keyof typeof FilesystemService.method
  | keyof typeof ImageService.method
  | keyof typeof NetworkService.method
  | "importImage";

/** An RPC's name on the wire, e.g. "CreateSandbox": what `calls` records. */
export type RpcMethodName = Capitalize<LocalMethodName>;

const METHODS: readonly string[] = [
  ...[SandboxService, ProcessService, FilesystemService, ImageService, NetworkService].flatMap((service) =>
    service.methods.map((method) => method.name),
  ),
  "ImportImage",
];

/** Short names for the calls the client makes most (e.g. `exec` starts a process). */
const ALIASES = {
  create: "CreateSandbox",
  get: "GetSandbox",
  lookup: "LookupSandbox",
  list: "ListSandboxes",
  wait: "WaitSandbox",
  terminate: "TerminateSandbox",
  setTags: "SetTags",
  exec: "StartProcess",
  read: "ReadOutput",
  write: "WriteStdin",
  waitProcess: "WaitProcess",
  signal: "SignalProcess",
  pull: "PullImage",
} as const satisfies Record<string, RpcMethodName>;

/**
 * What `failNext` takes: an RPC's wire name ("CreateSandbox"), its lowerCamelCase name
 * ("createSandbox"), or a short alias ("create", "exec", …). A misspelt name does not compile.
 */
export type FaultMethod = RpcMethodName | LocalMethodName | keyof typeof ALIASES;

export function methodName(name: string): RpcMethodName {
  const alias = Object.hasOwn(ALIASES, name) ? ALIASES[name as keyof typeof ALIASES] : undefined;
  if (alias) return alias;
  const pascal = name.charAt(0).toUpperCase() + name.slice(1);
  if (METHODS.includes(pascal)) return pascal as RpcMethodName;
  throw new TypeError(
    `unknown method ${JSON.stringify(name)}; use one of ${[...METHODS, ...Object.keys(ALIASES)].join(", ")}`,
  );
}

function codeOf(name: FaultCode): Code {
  const key = name.replace(/(^|_)(\w)/g, (_, __, c: string) => c.toUpperCase()) as keyof typeof Code;
  const code = Code[key];
  if (typeof code !== "number") throw new TypeError(`unknown status code ${JSON.stringify(name)}`);
  return code;
}

interface PendingFailure {
  options: FailNextCodeOptions;
  remaining: number;
}

export class Faults {
  readonly calls: RecordedCall[] = [];
  latencyMs = 0;
  readonly #failures = new Map<string, PendingFailure[]>();
  readonly #imageFailures = new Map<string, { options: FailNextImageOptions; remaining: number }[]>();
  #cuts: { afterBytes: number | (() => number); remaining: number } | undefined;

  constructor(private readonly token: string | undefined) {}

  /** `method` is checked at run time too, for callers without types. */
  failNext(method: FaultMethod, options: FailNextOptions): void {
    const name = methodName(method);
    const times = options.times ?? 1;
    if (!Number.isInteger(times) || times < 1) throw new TypeError("times must be a positive integer");
    if ("imageError" in options) {
      if (!IMAGE_ERRORS.includes(options.imageError)) {
        throw new TypeError(
          `unknown image error ${JSON.stringify(options.imageError)}; use one of ${IMAGE_ERRORS.join(", ")}`,
        );
      }
      if (name !== "PullImage" && name !== "ImportImage") {
        throw new TypeError(`imageError fails pulls ("pullImage") or imports ("importImage"), not ${name}`);
      }
      const queue = this.#imageFailures.get(name) ?? [];
      queue.push({ options, remaining: times });
      this.#imageFailures.set(name, queue);
      return;
    }
    codeOf(options.code);
    const queue = this.#failures.get(name) ?? [];
    queue.push({ options, remaining: times });
    this.#failures.set(name, queue);
  }

  /** The next injected image-store failure of pulls or imports, if one is pending. */
  takeImageFailure(method: "PullImage" | "ImportImage"): FailNextImageOptions | undefined {
    const queue = this.#imageFailures.get(method);
    const head = queue?.[0];
    if (!queue || !head) return undefined;
    head.remaining--;
    if (head.remaining <= 0) queue.shift();
    return head.options;
  }

  cutStreams(options: CutStreamsOptions): void {
    if (typeof options.afterBytes !== "function") checkCutPoint(options.afterBytes);
    const times = options.times ?? 1;
    if (!Number.isInteger(times) || times < 1) throw new TypeError("times must be a positive integer");
    this.#cuts = { afterBytes: options.afterBytes, remaining: times };
  }

  /** Drops pending injected failures and cuts (the call record stays). */
  clear(): void {
    this.#failures.clear();
    this.#imageFailures.clear();
    this.#cuts = undefined;
  }

  reset(): void {
    this.clear();
    this.calls.length = 0;
  }

  #takeFailure(method: string): FailNextCodeOptions | undefined {
    const queue = this.#failures.get(method);
    const head = queue?.[0];
    if (!queue || !head) return undefined;
    head.remaining--;
    if (head.remaining <= 0) queue.shift();
    return head.options;
  }

  #takeCut(): number | undefined {
    if (!this.#cuts || this.#cuts.remaining <= 0) return undefined;
    this.#cuts.remaining--;
    const { afterBytes } = this.#cuts;
    return typeof afterBytes === "function" ? checkCutPoint(afterBytes()) : afterBytes;
  }

  /**
   * Raw HTTP requests (served when the fake listens on a port) while faults are scripted:
   * injected failures and cuts are defined on the RPCs, so a download with one pending is
   * sent to its RPC for that call (where the interceptor applies it), and an upload with a
   * failure pending is answered as by a server without raw routes, so that client uploads
   * through WriteFile from then on. Served raw calls are recorded as the RPC they stand for.
   */
  readonly rawCall = async (method: RawMethod): Promise<RawCallPlan | undefined> => {
    if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs));
    if (method === "ImportImage") {
      // No RPC to send it to: an injected failure is the route's answer.
      this.calls.push({ method, request: undefined });
      const failure = this.#takeFailure(method);
      return failure ? { fail: errorOf(failure, method) } : undefined;
    }
    if (this.#failures.get(method)?.length) return method === "WriteFile" ? { unserved: true } : { decline: true };
    if (method !== "WriteFile" && this.#cuts && this.#cuts.remaining > 0) return { decline: true };
    this.calls.push({ method, request: undefined });
    return undefined;
  };

  readonly interceptor: Interceptor = (next) => async (request) => {
    const method = request.method.name as RpcMethodName;
    this.calls.push({ method, request: request.stream ? undefined : request.message });
    if (this.token !== undefined && request.header.get("authorization") !== `Bearer ${this.token}`) {
      throw new ConnectError("missing or wrong bearer token", Code.Unauthenticated);
    }
    if (this.latencyMs > 0) await new Promise((r) => setTimeout(r, this.latencyMs));
    const failure = this.#takeFailure(method);
    if (failure && !failure.afterApplying) throw errorOf(failure, method);
    const response = await next(request);
    if (failure) {
      // Let a streaming call run to completion before reporting the failure.
      if (response.stream) for await (const _ of response.message);
      throw errorOf(failure, method);
    }
    if (!response.stream || !CUT_METHODS.has(method)) return response;
    const cutAfter = this.#takeCut();
    if (cutAfter === undefined) return response;
    return {
      ...response,
      message: cut(response.message as AsyncIterable<{ data: Uint8Array }>, cutAfter),
    } as typeof response;
  };
}

/** The streams `cutStreams` cuts: those of data bytes the client resumes from an offset. */
const CUT_METHODS = new Set(["ReadOutput", "ReadFile"]);

function checkCutPoint(afterBytes: number): number {
  if (!Number.isInteger(afterBytes) || afterBytes < 0) {
    throw new TypeError(`afterBytes must be a non-negative integer, got ${afterBytes}`);
  }
  return afterBytes;
}

function errorOf(failure: FailNextCodeOptions, method: string): ConnectError {
  const details =
    failure.retryAfterMs === undefined
      ? undefined
      : [{ desc: RetryInfoSchema, value: { retryDelayMs: BigInt(failure.retryAfterMs) } }];
  return new ConnectError(
    failure.message ?? `injected ${failure.code} failure of ${method}`,
    codeOf(failure.code),
    undefined,
    details,
  );
}

async function* cut<M extends { data: Uint8Array }>(messages: AsyncIterable<M>, afterBytes: number): AsyncGenerator<M> {
  let sent = 0;
  for await (const message of messages) {
    const room = afterBytes - sent;
    if (message.data.byteLength > room) {
      if (room > 0) yield { ...message, data: message.data.subarray(0, room), eof: false };
      throw new ConnectError(`stream cut after ${afterBytes} bytes (injected)`, Code.Unavailable);
    }
    sent += message.data.byteLength;
    yield message;
  }
}
