/**
 * A create's `image` option, checked: loaded only when a create names an image, so the
 * reference grammar (from @sbx/proto) stays out of what an app loads at start.
 */
import { imageReferenceProblem, isImageDigest, isImageId } from "@sbx/proto";
import { InvalidError } from "./errors.js";
import { IMAGE_TRANSFER_TIMEOUT_MS } from "./image-ops.js";

/**
 * The image as the wire names it (an Image's id, or the string given), and the call settings
 * of the create: one that may pull its image (a reference) takes as long as a pull, and so may
 * each attempt (a retry joins the create in flight on the server).
 */
export function createImage(image: unknown): {
  readonly name: string;
  readonly settings: { readonly timeoutMs?: number; readonly attemptTimeoutMs?: number };
} {
  const name = typeof image === "object" && image !== null ? (image as { id?: unknown }).id : image;
  if (typeof name !== "string" || name.length === 0 || name.length > 1024) {
    throw new InvalidError("image must be an image id, a registry reference or an Image");
  }
  if (isImageId(name) || isImageDigest(name)) return { name, settings: {} };
  const problem = imageReferenceProblem(name);
  if (problem) throw new InvalidError(problem);
  return { name, settings: { timeoutMs: IMAGE_TRANSFER_TIMEOUT_MS, attemptTimeoutMs: IMAGE_TRANSFER_TIMEOUT_MS } };
}
