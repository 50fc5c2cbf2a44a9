/**
 * Image archives on disk for the import tests (a test builds them; a client imports them): an
 * OCI image layout directory and a `docker save` tarball, each one image with one layer tarred
 * by GNU tar, as image builders do. With `busybox`, the layer also holds Debian's static
 * busybox as /bin/sh and a few applets, so that a sandbox started from the image on the real
 * server can run something.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

export interface TestArchiveImage {
  /** The layer's files, path → text. */
  readonly files: Record<string, string>;
  /** The config's `config` (Env, WorkingDir, User, …). */
  readonly config: Record<string, unknown>;
  /** Debian's static busybox as /bin/busybox, with sh, cat, echo and id linked to it. */
  readonly busybox?: boolean;
}

const sha = (data: Uint8Array | string) => `sha256:${createHash("sha256").update(data).digest("hex")}`;

/** Commands a busybox image offers (a sandbox runs what its image has). */
const APPLETS = ["sh", "cat", "echo", "id"];

/** The image's layer as a tar, made under `work`. */
function layerTar(work: string, image: TestArchiveImage): Buffer {
  const root = join(work, "layer-root");
  mkdirSync(root, { recursive: true });
  if (image.busybox) {
    mkdirSync(join(root, "bin"), { recursive: true });
    copyFileSync("/usr/bin/busybox", join(root, "bin", "busybox"));
    chmodSync(join(root, "bin", "busybox"), 0o755);
    for (const applet of APPLETS) symlinkSync("busybox", join(root, "bin", applet));
  }
  for (const [path, text] of Object.entries(image.files)) {
    mkdirSync(join(root, path, ".."), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  const file = join(work, "layer.tar");
  execFileSync("tar", ["-c", "-f", file, "--sort=name", "--owner=0", "--group=0", "--mtime=@0", "-C", root, "."]);
  return readFileSync(file);
}

const configOf = (layer: Buffer, config: Record<string, unknown>) =>
  JSON.stringify({ architecture: "amd64", os: "linux", config, rootfs: { type: "layers", diff_ids: [sha(layer)] } });

/** An OCI image layout at `dir` (made under `work`) holding one image (one gzip layer) named `name`. */
export function writeOciLayout(work: string, dir: string, name: string, image: TestArchiveImage): void {
  const layer = layerTar(join(work, "oci-layer"), image);
  const gz = gzipSync(layer);
  const configJson = configOf(layer, image.config);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha(configJson), size: configJson.length },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: sha(gz), size: gz.byteLength }],
  });
  mkdirSync(join(dir, "blobs", "sha256"), { recursive: true });
  for (const blob of [gz, configJson, manifest]) writeFileSync(join(dir, "blobs", "sha256", sha(blob).slice(7)), blob);
  writeFileSync(join(dir, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(
    join(dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          digest: sha(manifest),
          size: manifest.length,
          annotations: { "io.containerd.image.name": name },
        },
      ],
    }),
  );
}

/** A `docker save` tarball at `tarball` (made under `work`: manifest.json, the config, l1/layer.tar) of one image tagged `tag`. */
export function writeDockerSave(work: string, tarball: string, tag: string, image: TestArchiveImage): void {
  const save = join(work, "save");
  const layer = layerTar(join(work, "save-layer"), image);
  const configJson = configOf(layer, image.config);
  const configName = `${sha(configJson).slice(7)}.json`;
  mkdirSync(join(save, "l1"), { recursive: true });
  writeFileSync(join(save, configName), configJson);
  writeFileSync(join(save, "l1", "layer.tar"), layer);
  writeFileSync(
    join(save, "manifest.json"),
    JSON.stringify([{ Config: configName, RepoTags: [tag], Layers: ["l1/layer.tar"] }]),
  );
  execFileSync("tar", ["-c", "-f", tarball, "-C", save, "."]);
}
