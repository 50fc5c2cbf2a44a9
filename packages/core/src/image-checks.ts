/** The image reference grammar (from @sbx/proto), loaded only when a create names an image. */
import { imageReferenceProblem, isImageDigest } from "@sbx/proto";

/** What is wrong with a create's image string as a reference (ids never get here), if anything. */
export const referenceProblem = (image: string): string | undefined =>
  isImageDigest(image) ? undefined : imageReferenceProblem(image);
