/** The fake's file errors: errnos with the kind and text the real server reports for each. */
import { type FsErrorKind, RuntimeFsError } from "@sbx/server-kit";

const ERRNO = {
  ENOENT: ["not_found", "No such file or directory"],
  EISDIR: ["is_a_directory", "Is a directory"],
  ENOTDIR: ["not_a_directory", "Not a directory"],
  ENOTEMPTY: ["directory_not_empty", "Directory not empty"],
  EEXIST: ["already_exists", "File exists"],
  EACCES: ["permission_denied", "Permission denied"],
  EROFS: ["permission_denied", "Read-only file system"],
  ELOOP: ["other", "Too many levels of symbolic links"],
  ENAMETOOLONG: ["other", "File name too long"],
  EINVAL: ["other", "Invalid argument"],
  EBUSY: ["other", "Device or resource busy"],
  ENOSPC: ["no_space", "No space left on device"],
} as const satisfies Record<string, readonly [FsErrorKind, string]>;

export type Errno = keyof typeof ERRNO;

/** A failed file operation: an errno, the kind the wire reports, and a message naming the path. */
export class FakeFsError extends RuntimeFsError {
  /** The errno's text, e.g. "No such file or directory". */
  readonly strerror: string;

  constructor(
    readonly code: Errno,
    path: string,
    options: { message?: string; kind?: FsErrorKind } = {},
  ) {
    const [kind, text] = ERRNO[code];
    super(options.kind ?? kind, options.message ?? `${path}: ${text}`);
    this.name = "FakeFsError";
    this.strerror = text;
  }
}

/** Whether `error` is a FakeFsError with errno `code`. */
export const isErrno = (error: unknown, code: Errno): error is FakeFsError =>
  error instanceof FakeFsError && error.code === code;

/** A read-only failure reported for the path asked about (as the agent reports it), not a part of it. */
export function namingReadOnly(error: unknown, path: string): unknown {
  return isErrno(error, "EROFS") ? new FakeFsError("EROFS", path) : error;
}
