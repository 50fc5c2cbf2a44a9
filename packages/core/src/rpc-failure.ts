/**
 * A failed RPC as core reads it — a Connect code, the server's message and its error details
 * — whatever client produced it: Connect's `ConnectError` has this shape, and so does
 * `RpcFailure`, which @sbx/web's own Connect-protocol client throws. Details are decoded with
 * the protobuf-free codec of `@sbx/proto/wire`, so none of this needs protobuf-es.
 */
import { decodeMessage } from "@sbx/proto/wire";

/**
 * The Connect (gRPC) status codes, as on the wire: the values of `Code` from
 * `@connectrpc/connect`, as a plain object (a TypeScript enum carries a reverse mapping that
 * a bundler cannot trim).
 */
export const Code = {
  Canceled: 1,
  Unknown: 2,
  InvalidArgument: 3,
  DeadlineExceeded: 4,
  NotFound: 5,
  AlreadyExists: 6,
  PermissionDenied: 7,
  ResourceExhausted: 8,
  FailedPrecondition: 9,
  Aborted: 10,
  OutOfRange: 11,
  Unimplemented: 12,
  Internal: 13,
  Unavailable: 14,
  DataLoss: 15,
  Unauthenticated: 16,
} as const;
export type Code = (typeof Code)[keyof typeof Code];

const CODE_NAMES = Object.keys(Code);

/** An error detail as it came over the wire: a message type name and its binary encoding. */
export interface RpcFailureDetail {
  readonly type: string;
  readonly value: Uint8Array;
}

/** What core needs of a failed call. */
export interface RpcFailureLike {
  readonly code: Code;
  /** The server's message (without the code prefix `ConnectError.message` adds). */
  readonly rawMessage: string;
  /** Wire details (`{ type, value }`), or protobuf-es messages (`{ desc, value }`) raised locally. */
  readonly details: readonly unknown[];
  readonly cause?: unknown;
}

/** A failed RPC from a client without `ConnectError` (@sbx/web's). */
export class RpcFailure extends Error implements RpcFailureLike {
  override readonly name = "RpcFailure";
  constructor(
    readonly rawMessage: string,
    readonly code: Code,
    readonly details: readonly RpcFailureDetail[] = [],
    options?: { cause?: unknown },
  ) {
    super(`[${codeName(code)}] ${rawMessage}`, options);
  }
}

/** `Code.InvalidArgument` → "invalid_argument", as the Connect protocol spells codes. */
export const codeName = (code: Code): string =>
  CODE_NAMES[code - 1]?.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase() ?? "unknown";

/** Anything thrown by a client as code, message and details (`ConnectError.from`'s rules). */
export function rpcFailureOf(error: unknown): RpcFailureLike {
  if (
    typeof error === "object" &&
    error !== null &&
    typeof (error as RpcFailureLike).code === "number" &&
    typeof (error as RpcFailureLike).rawMessage === "string" &&
    Array.isArray((error as RpcFailureLike).details)
  ) {
    return error as RpcFailureLike;
  }
  if (error instanceof Error) {
    // A fetch or stream the caller aborted, or one whose `AbortSignal.timeout` fired.
    const code =
      error.name === "AbortError"
        ? Code.Canceled
        : error.name === "TimeoutError"
          ? Code.DeadlineExceeded
          : Code.Unknown;
    return { code, rawMessage: error.message, details: [], cause: error };
  }
  return { code: Code.Unknown, rawMessage: String(error), details: [], cause: error };
}

/** The detail of message type `typeName` a failure carries, decoded; undefined if none. */
export function detailOf<T>(failure: RpcFailureLike, typeName: string): T | undefined {
  for (const detail of failure.details) {
    if (typeof detail !== "object" || detail === null) continue;
    const { type, value, desc } = detail as { type?: unknown; value?: unknown; desc?: { typeName?: unknown } };
    try {
      if (type === typeName && value instanceof Uint8Array) return decodeMessage<T>(typeName, value);
    } catch {
      return undefined;
    }
    if (desc?.typeName === typeName && typeof value === "object") return value as T;
  }
  return undefined;
}

/** The code Connect assigns an HTTP status that came without a Connect error body. */
export const codeFromHttpStatus = (status: number): Code =>
  (
    ({
      400: Code.Internal,
      401: Code.Unauthenticated,
      403: Code.PermissionDenied,
      404: Code.Unimplemented,
      429: Code.Unavailable,
      502: Code.Unavailable,
      503: Code.Unavailable,
      504: Code.Unavailable,
    }) as Record<number, Code>
  )[status] ?? Code.Unknown;

/**
 * A Connect protocol error body (`{ code, message, details: [{ type, value }] }`, values in
 * base64) as an `RpcFailure`; a body that is not one gets the HTTP status's code.
 */
export function rpcFailureFromJson(json: unknown, status: number): RpcFailure {
  const body = (typeof json === "object" && json !== null ? json : {}) as {
    code?: unknown;
    message?: unknown;
    details?: unknown;
  };
  let code: Code | undefined;
  for (const c of Object.values(Code)) if (codeName(c) === body.code) code = c;
  if (code === undefined) return new RpcFailure(`HTTP ${status}`, codeFromHttpStatus(status));
  const details: RpcFailureDetail[] = [];
  if (Array.isArray(body.details)) {
    for (const d of body.details as { type?: unknown; value?: unknown }[]) {
      if (typeof d?.type !== "string" || typeof d.value !== "string") continue;
      try {
        details.push({ type: d.type, value: fromBase64(d.value) });
      } catch {
        // A detail we cannot read is left out; the code and message still stand.
      }
    }
  }
  return new RpcFailure(typeof body.message === "string" ? body.message : "", code, details);
}

/** Base64 as Connect writes it (standard alphabet, padding optional: `atob` accepts both). */
export function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
