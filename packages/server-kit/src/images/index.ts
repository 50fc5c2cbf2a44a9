/**
 * @sbx/server-kit/images — what the image stores of the server and of the fake share (browser-safe):
 * the image documents (indexes, manifests, configs) parsed and checked, platforms, digests, and
 * the reading of image archives, from their tar entries to the image they hold. Each store
 * parses the tar and keeps the archive's files its own way (the server on disk, the fake in memory).
 */

export {
  ArchiveContents,
  type ArchiveEntry,
  type ArchiveFile,
  type ArchiveLimits,
  archiveName,
  MAX_ARCHIVE_ENTRIES,
  readArchive,
} from "./archive-contents.js";
export { type ArchiveImage, MAX_ARCHIVE_MANIFESTS, resolveArchiveImage } from "./archive-image.js";
export { type Algorithm, algorithmOf, digestOfBytes, hexOf, isDigest } from "./digest.js";
export {
  checkLayersMatch,
  type Descriptor,
  type ImageIndex,
  type ImageManifest,
  MANIFEST_ACCEPT,
  MAX_CONFIG_BYTES,
  MAX_IMAGE_LAYERS,
  MAX_MANIFEST_BYTES,
  MEDIA_TYPES,
  type ParsedConfig,
  parseConfig,
  parseManifestOrIndex,
  type ResolvedImage,
} from "./manifest.js";
export { choosePlatform, formatPlatform, platformMatches } from "./platform.js";
