/** The sbx server's image store: what the server (and its runtime driver) use of `images/`. */
export {
  DEFAULT_LAYER_ID_BASE,
  type ImageStoreUsage,
  imageIdOf,
  OciImageStore,
  type OciImageStoreOptions,
} from "./oci-image-store.js";
