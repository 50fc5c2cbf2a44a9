/** Image records as the wire has them. */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ImageSchema } from "@sbx/proto";
import type { ImageRecord } from "../image-store.js";

export const imageToWire = (image: ImageRecord, builtin: boolean): MessageInitShape<typeof ImageSchema> => ({
  id: image.id,
  refs: [...image.refs],
  digest: image.digest,
  sizeBytes: BigInt(Math.max(0, Math.trunc(image.sizeBytes))),
  createdAtMs: BigInt(Math.max(0, Math.trunc(image.createdAtMs))),
  platform: {
    os: image.platform.os,
    architecture: image.platform.architecture,
    variant: image.platform.variant ?? "",
  },
  config: {
    env: [...image.config.env],
    workingDir: image.config.workingDir ?? "",
    user: image.config.user ?? "",
    entrypoint: [...(image.config.entrypoint ?? [])],
    cmd: [...(image.config.cmd ?? [])],
  },
  layerCount: image.layers.length,
  builtin,
});
