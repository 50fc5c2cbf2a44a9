/** Image operations for the Effect API (`Images.pull`, …). */
export {
  deleteImage as delete,
  getImage as get,
  IMAGE_TRANSFER_TIMEOUT_MS,
  type Image,
  type ImageConfig,
  type ImportImageOptions,
  importImageArchive as importArchive,
  listImages as list,
  type PullImageOptions,
  type PullProgress,
  pullImage as pull,
} from "./image-ops.js";
