/**
 * How the image store turns what went wrong into the seam's {@link ImageStoreError} kinds: one
 * place for the file system's errors (a full disk is "quota", whatever file it hit), and the
 * helpers every other module uses to throw a kind with a message.
 */
import { ImageStoreError, imageStoreError as storeError } from "@sbx/server-kit/image-store";

export { ImageStoreError, storeError };

/** Whether `error` is a full disk or an exhausted quota (ENOSPC, EDQUOT). */
export function isDiskFull(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === "ENOSPC" || code === "EDQUOT";
}

/**
 * `error` as an ImageStoreError: kept when it already is one, "quota" for a full disk, and
 * otherwise rethrown as it is (an unexpected error is a bug to see, not a kind to guess).
 */
export function asStoreError(error: unknown, doing: string): unknown {
  if (error instanceof ImageStoreError) return error;
  if (isDiskFull(error)) {
    return storeError("quota", `the image store's disk is full while ${doing}; what it had written is removed`, error);
  }
  return error;
}

/** A name from an image or a registry, quoted so newlines and control characters show. */
export const quoted = (text: string): string => JSON.stringify(text);
