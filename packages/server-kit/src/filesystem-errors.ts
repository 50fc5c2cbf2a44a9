/**
 * Filesystem failures as Connect errors: a status code for clients that only look at codes,
 * plus a FilesystemError detail naming the exact kind and path (which @sbx/core turns into
 * the matching SandboxFilesystem…Error). Shared by the server and the fake.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { FilesystemErrorKind, FilesystemErrorSchema } from "@sbx/proto";

export type FsErrorKind =
  | "not_found"
  | "is_a_directory"
  | "not_a_directory"
  | "directory_not_empty"
  | "already_exists"
  | "permission_denied"
  | "no_space"
  | "other";

const KINDS: Record<FsErrorKind, [FilesystemErrorKind, Code]> = {
  not_found: [FilesystemErrorKind.NOT_FOUND, Code.NotFound],
  is_a_directory: [FilesystemErrorKind.IS_A_DIRECTORY, Code.FailedPrecondition],
  not_a_directory: [FilesystemErrorKind.NOT_A_DIRECTORY, Code.FailedPrecondition],
  directory_not_empty: [FilesystemErrorKind.DIRECTORY_NOT_EMPTY, Code.FailedPrecondition],
  already_exists: [FilesystemErrorKind.ALREADY_EXISTS, Code.AlreadyExists],
  permission_denied: [FilesystemErrorKind.PERMISSION_DENIED, Code.PermissionDenied],
  no_space: [FilesystemErrorKind.NO_SPACE, Code.ResourceExhausted],
  other: [FilesystemErrorKind.UNSPECIFIED, Code.Internal],
};

export function filesystemError(kind: FsErrorKind, path: string, message: string): ConnectError {
  const [detail, code] = KINDS[kind] ?? KINDS.other;
  return new ConnectError(message, code, undefined, [{ desc: FilesystemErrorSchema, value: { kind: detail, path } }]);
}
