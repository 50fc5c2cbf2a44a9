import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { ImageStoreError } from "@sbx/server-kit";
import { describe, expect, it } from "vitest";
import { readImageArchive } from "./fake-archive.js";

const read = (archive: Uint8Array) =>
  readImageArchive(archive, { os: "linux", architecture: "amd64" }, { maxBytes: 64 * 1024 * 1024 });

/** One tar entry as a test crafts it (names are not checked: that is the point). */
interface Entry {
  readonly name: string;
  readonly data?: string | Uint8Array;
  readonly type?: "0" | "5" | "2" | "1" | "3";
  readonly link?: string;
  readonly mode?: number;
}

const encoder = new TextEncoder();
const bytes = (data: string | Uint8Array = "") => (typeof data === "string" ? encoder.encode(data) : data);

/** A ustar archive of `entries` (PAX for names past 100 bytes). */
function tar(entries: readonly Entry[]): Uint8Array {
  const blocks: Uint8Array[] = [];
  const header = (name: string, flag: string, size: number, mode: number, link = "") => {
    const block = new Uint8Array(512);
    const put = (at: number, text: string) => block.set(encoder.encode(text), at);
    put(0, name);
    put(100, `${mode.toString(8).padStart(7, "0")}\0`);
    put(108, "0000000\0");
    put(116, "0000000\0");
    put(124, `${size.toString(8).padStart(11, "0")}\0`);
    put(136, "00000000000\0");
    put(156, flag);
    put(157, link);
    put(257, "ustar\0");
    put(263, "00");
    block.fill(0x20, 148, 156);
    put(
      148,
      `${block
        .reduce((a, b) => a + b, 0)
        .toString(8)
        .padStart(6, "0")}\0 `,
    );
    return block;
  };
  const pad = (size: number) => new Uint8Array((512 - (size % 512)) % 512);
  for (const entry of entries) {
    const data = bytes(entry.data);
    if (encoder.encode(entry.name).byteLength > 100) {
      const record = ` path=${entry.name}\n`;
      const body = encoder.encode(`${record.length + 3}${record}`);
      blocks.push(header("pax", "x", body.byteLength, 0o644), body, pad(body.byteLength));
    }
    blocks.push(
      header(entry.name.slice(0, 100), entry.type ?? "0", data.byteLength, entry.mode ?? 0o644, entry.link),
      data,
      pad(data.byteLength),
    );
  }
  blocks.push(new Uint8Array(1024));
  return Buffer.concat(blocks);
}

const sha = (data: Uint8Array | string) => `sha256:${createHash("sha256").update(bytes(data)).digest("hex")}`;

/** A `docker save` archive (manifest.json) of layers given as entry lists, with this config. */
function dockerSave(
  layers: readonly (readonly Entry[])[],
  config: Record<string, unknown> = {},
  repoTags = ["example.test/app:1"],
) {
  const layerTars = layers.map(tar);
  const configJson = JSON.stringify({
    architecture: "amd64",
    os: "linux",
    config,
    rootfs: { type: "layers", diff_ids: layerTars.map((l) => sha(l)) },
  });
  const configName = `${sha(configJson).slice(7)}.json`;
  return tar([
    { name: configName, data: configJson },
    ...layerTars.map((data, i) => ({ name: `layer${i}/layer.tar`, data })),
    {
      name: "manifest.json",
      data: JSON.stringify([
        { Config: configName, RepoTags: repoTags, Layers: layerTars.map((_, i) => `layer${i}/layer.tar`) },
      ]),
    },
  ]);
}

/** An OCI image layout (tarred) with one gzip layer, named by annotation. */
function ociLayout(layer: readonly Entry[], options: { corruptLayer?: boolean; architecture?: string } = {}) {
  const layerTar = tar(layer);
  const layerGz = gzipSync(layerTar);
  const config = JSON.stringify({
    architecture: options.architecture ?? "amd64",
    os: "linux",
    config: { Env: ["PATH=/usr/bin", "FROM=oci"], WorkingDir: "/app", User: "1000:1000" },
    rootfs: { type: "layers", diff_ids: [sha(layerTar)] },
  });
  const manifest = JSON.stringify({
    schemaVersion: 2,
    config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: sha(config), size: config.length },
    layers: [
      { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: sha(layerGz), size: layerGz.byteLength },
    ],
  });
  const index = JSON.stringify({
    schemaVersion: 2,
    manifests: [
      {
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        digest: sha(manifest),
        size: manifest.length,
        annotations: { "io.containerd.image.name": "example.test/oci:2" },
      },
    ],
  });
  const blob = (data: string | Uint8Array) => ({ name: `blobs/sha256/${sha(data).slice(7)}`, data });
  const stored = options.corruptLayer
    ? { ...blob(layerGz), data: gzipSync(tar([{ name: "evil", data: "x" }])) }
    : blob(layerGz);
  return {
    archive: tar([
      { name: "oci-layout", data: '{"imageLayoutVersion":"1.0.0"}' },
      { name: "index.json", data: index },
      { name: "blobs/", type: "5" },
      { name: "blobs/sha256/", type: "5" },
      blob(config),
      blob(manifest),
      stored,
    ]),
    manifestDigest: sha(manifest),
  };
}

const text = (file: unknown) => new TextDecoder().decode((file as { data: Uint8Array }).data);

async function kindOf(work: Promise<unknown>): Promise<string | undefined> {
  try {
    await work;
    return undefined;
  } catch (error) {
    expect(error).toBeInstanceOf(ImageStoreError);
    return (error as ImageStoreError).kind;
  }
}

describe("readImageArchive", () => {
  it("reads a docker save archive: tags, config, and layers applied in order with their whiteouts", async () => {
    const image = await read(
      dockerSave(
        [
          [
            { name: "etc/", type: "5" },
            { name: "etc/keep", data: "keep" },
            { name: "etc/gone", data: "gone" },
            { name: "opt/dir/", type: "5" },
            { name: "opt/dir/old", data: "old" },
            { name: "bin/sh", data: "#!", mode: 0o755 },
          ],
          [
            { name: "./etc/.wh.gone" },
            { name: "opt/dir/.wh..wh..opq" },
            { name: "opt/dir/new", data: "new" },
            { name: "bin/ls", type: "1", link: "bin/sh" },
            { name: "usr/lib/link", type: "2", link: "../../etc/keep" },
            { name: `deep/${"n".repeat(120)}`, data: "long name" },
          ],
        ],
        { Env: ["A=1"], WorkingDir: "/srv", User: "app", Cmd: ["sh"] },
      ),
    );
    expect(image.refs).toEqual(["example.test/app:1"]);
    expect(image.config).toMatchObject({ env: ["A=1"], workingDir: "/srv", user: "app", cmd: ["sh"] });
    expect(image.platform).toMatchObject({ os: "linux", architecture: "amd64" });
    expect(image.layers).toHaveLength(2);
    const files = image.files;
    expect(text(files.get("/etc/keep"))).toBe("keep");
    expect(files.has("/etc/gone")).toBe(false);
    expect(files.has("/opt/dir/old")).toBe(false);
    expect(text(files.get("/opt/dir/new"))).toBe("new");
    expect(files.get("/bin/sh")).toMatchObject({ type: "file", mode: 0o755 });
    expect(text(files.get("/bin/ls"))).toBe("#!"); // a hard link is the file's contents
    expect(files.get("/usr/lib/link")).toEqual({ type: "symlink", target: "../../etc/keep" });
    expect(text(files.get(`/deep/${"n".repeat(120)}`))).toBe("long name");
  });

  it("reads an OCI image layout: the annotated name, a gzip layer, the config's Env, WorkingDir and User", async () => {
    const { archive, manifestDigest } = ociLayout([{ name: "app/main.py", data: "print(1)" }]);
    const image = await read(archive);
    expect(image.refs).toEqual(["example.test/oci:2"]);
    expect(image.digest).toBe(manifestDigest);
    expect(image.config).toMatchObject({ env: ["PATH=/usr/bin", "FROM=oci"], workingDir: "/app", user: "1000:1000" });
    expect(text(image.files.get("/app/main.py"))).toBe("print(1)");
  });

  it("reads a gzip-compressed archive, and a layer that the older docker save shares through a symlink", async () => {
    const layer = tar([{ name: "etc/motd", data: "shared" }]);
    const config = JSON.stringify({
      architecture: "amd64",
      os: "linux",
      rootfs: { type: "layers", diff_ids: [sha(layer), sha(layer)] },
    });
    const archive = tar([
      { name: `${sha(config).slice(7)}.json`, data: config },
      { name: "aaa/layer.tar", data: layer },
      { name: "bbb/layer.tar", type: "2", link: "../aaa/layer.tar" },
      {
        name: "manifest.json",
        data: JSON.stringify([
          {
            Config: `${sha(config).slice(7)}.json`,
            RepoTags: ["shared:1"],
            Layers: ["aaa/layer.tar", "bbb/layer.tar"],
          },
        ]),
      },
    ]);
    const image = await read(gzipSync(archive));
    expect(image.refs).toEqual(["docker.io/library/shared:1"]);
    expect(image.layers).toEqual([sha(layer), sha(layer)]);
    expect(text(image.files.get("/etc/motd"))).toBe("shared");
  });

  it("stops reading an archive that unpacks to more than its limit (a gzip bomb)", async () => {
    const bomb = gzipSync(tar([{ name: "blobs/sha256/zeros", data: new Uint8Array(16 * 1024 * 1024) }]));
    const error = await readImageArchive(bomb, { os: "linux", architecture: "amd64" }, { maxBytes: 1024 * 1024 }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ImageStoreError);
    expect((error as ImageStoreError).kind).toBe("quota");
    expect((error as ImageStoreError).message).toBe(
      "the archive unpacks to more than 1048576 bytes, the store's limit for one image",
    );
  });

  it("refuses layer entries that would land outside the image's root, and hard links to what is not in it", async () => {
    for (const entry of [
      { name: "../escape", data: "x" },
      { name: "a/../../escape", data: "x" },
      { name: "etc/ok", type: "1" as const, link: "../../etc/passwd" },
    ]) {
      const error = await read(dockerSave([[entry]])).catch((e: unknown) => e);
      expect(error, entry.name).toBeInstanceOf(ImageStoreError);
      expect((error as ImageStoreError).kind).toBe("invalid");
    }
    // An absolute name is the image's own root, not the host's.
    const absolute = await read(dockerSave([[{ name: "/etc/abs", data: "in the image" }]]));
    expect(text(absolute.files.get("/etc/abs"))).toBe("in the image");
  });

  it("refuses what does not match its digest, nothing kept: a layer blob, a layer's diff id, the config", async () => {
    expect(await kindOf(read(ociLayout([{ name: "a", data: "a" }], { corruptLayer: true }).archive))).toBe(
      "digest-mismatch",
    );
    const save = dockerSave([[{ name: "a", data: "a" }]]);
    // Same size, other bytes: the layer's diff id no longer matches.
    const tampered = new Uint8Array(save);
    const at = Buffer.from(tampered).indexOf("layer0/layer.tar");
    const dataAt = at + 512 + 512; // the layer tar's first entry's data
    tampered[dataAt] = "b".charCodeAt(0);
    expect(await kindOf(read(tampered))).toBe("digest-mismatch");
  });

  it("says what is wrong with what is not an image archive", async () => {
    expect(await kindOf(read(tar([{ name: "hello.txt", data: "hi" }])))).toBe("invalid");
    expect(await kindOf(read(new Uint8Array(1024).fill(1)))).toBe("invalid");
    const zstd = new Uint8Array([0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0]);
    const config = JSON.stringify({
      os: "linux",
      architecture: "amd64",
      rootfs: { type: "layers", diff_ids: [sha(zstd)] },
    });
    const archive = tar([
      { name: "c.json", data: config },
      { name: "l.tar", data: zstd },
      { name: "manifest.json", data: JSON.stringify([{ Config: "c.json", Layers: ["l.tar"] }]) },
    ]);
    expect(await kindOf(read(archive))).toBe("unsupported");
  });
});
