/**
 * Image failures as Connect errors: a status code for clients that only look at codes, plus an
 * ImageError detail naming the kind and the registry or image involved, which @sbx/core turns
 * into its typed errors. One table for the server and the fake, whatever their store.
 *
 * A registry refusing credentials is PERMISSION_DENIED, never UNAUTHENTICATED: that one means
 * the sbx token, and a client must not take a registry's "no" for its own token being wrong.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { ImageErrorKind, ImageErrorSchema } from "@sbx/proto";
import type { ImageStoreErrorKind } from "./image-store.js";

const KINDS: Record<ImageStoreErrorKind, readonly [Code, ImageErrorKind]> = {
  "not-found": [Code.NotFound, ImageErrorKind.NOT_FOUND],
  authentication: [Code.PermissionDenied, ImageErrorKind.AUTHENTICATION],
  connection: [Code.Unavailable, ImageErrorKind.CONNECTION],
  "digest-mismatch": [Code.DataLoss, ImageErrorKind.DIGEST_MISMATCH],
  invalid: [Code.InvalidArgument, ImageErrorKind.INVALID],
  unsupported: [Code.Unimplemented, ImageErrorKind.UNSUPPORTED],
  quota: [Code.ResourceExhausted, ImageErrorKind.QUOTA],
  "in-use": [Code.FailedPrecondition, ImageErrorKind.IN_USE],
  timeout: [Code.DeadlineExceeded, ImageErrorKind.TIMEOUT],
};

/** What a failure was about: the registry spoken to, and the image (canonical reference or id). */
export interface ImageFailureSubject {
  readonly registry?: string | undefined;
  readonly reference?: string | undefined;
}

export function imageFailure(
  kind: ImageStoreErrorKind,
  message: string,
  about: ImageFailureSubject = {},
): ConnectError {
  const [code, detail] = KINDS[kind];
  return new ConnectError(message, code, undefined, [
    {
      desc: ImageErrorSchema,
      value: { kind: detail, registry: about.registry ?? "", reference: about.reference ?? "" },
    },
  ]);
}

/** Duck-typed, so a store built against another copy of this package is understood too. */
function storeErrorKind(error: unknown): ImageStoreErrorKind | undefined {
  if (!(error instanceof Error) || error.name !== "ImageStoreError") return undefined;
  const kind = (error as { kind?: unknown }).kind;
  return typeof kind === "string" && Object.hasOwn(KINDS, kind) ? (kind as ImageStoreErrorKind) : undefined;
}

/**
 * Whatever a store threw, as it should reach the client: its ImageStoreErrors by kind, a
 * ConnectError as it is, anything else INTERNAL (`what` failed: message). Store messages must
 * never carry credentials; nothing here adds any.
 */
export function imageStoreFailure(error: unknown, about: ImageFailureSubject, what: string): ConnectError {
  if (error instanceof ConnectError) return error;
  const kind = storeErrorKind(error);
  if (kind) return imageFailure(kind, (error as Error).message, about);
  return new ConnectError(`${what} failed: ${error instanceof Error ? error.message : String(error)}`, Code.Internal);
}
