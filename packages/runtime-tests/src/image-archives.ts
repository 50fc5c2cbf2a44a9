/**
 * Image archives on disk for the import tests (the Node side builds them; Deno and Bun import
 * them): an OCI image layout directory and a `docker save` tarball, each one image with one
 * layer tarred by GNU tar (Debian's static busybox and the files asked for).
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const sha = (data: Uint8Array | string) => `sha256:${createHash("sha256").update(data).digest("hex")}`;

/** Commands the images offer, from Debian's static busybox (a sandbox runs what its image has). */
const APPLETS = ["sh", "cat", "echo", "id"];

/** `files` (path → text) as a layer tar, under `work`, with a static busybox as /bin/sh and a few applets. */
function layerTar(work: string, files: Record<string, string>): Buffer {
  const root = join(work, "layer-root");
  mkdirSync(join(root, "bin"), { recursive: true });
  copyFileSync("/usr/bin/busybox", join(root, "bin", "busybox"));
  chmodSync(join(root, "bin", "busybox"), 0o755);
  for (const applet of APPLETS) symlinkSync("busybox", join(root, "bin", applet));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(root, path, ".."), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  const file = join(work, "layer.tar");
  execFileSync("tar", ["-c", "-f", file, "--sort=name", "--owner=0", "--group=0", "--mtime=@0", "-C", root, "."]);
  return readFileSync(file);
}

const configOf = (layer: Buffer, config: Record<string, unknown>) =>
  JSON.stringify({ architecture: "amd64", os: "linux", config, rootfs: { type: "layers", diff_ids: [sha(layer)] } });

/** An OCI image layout at `dir` (made under `work`) holding one image named `name`. */
export function writeOciLayout(
  work: string,
  dir: string,
  name: string,
  files: Record<string, string>,
  config: Record<string, unknown>,
): void {
  const layer = layerTar(join(work, "oci"), files);
  const gz = gzipSync(layer);
  const configJson = configOf(layer, config);
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

/** A `docker save` tarball at `tarball` (made under `work`) of one image tagged `tag`. */
export function writeDockerSave(
  work: string,
  tarball: string,
  tag: string,
  files: Record<string, string>,
  config: Record<string, unknown>,
): void {
  const save = join(work, "save");
  const layer = layerTar(join(work, "save-layer"), files);
  const configJson = configOf(layer, config);
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
