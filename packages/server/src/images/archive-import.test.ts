/**
 * Imports of image archives made by skopeo (`oci-archive:` and `docker-archive:`) and by hand
 * (the older `docker save` layout with <id>/layer.tar and a symlinked layer; a tampered
 * blob; a gzip-compressed archive; things that are no image archive at all).
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  cpSync,
  createReadStream,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { spoolArchive } from "./archive-import.js";
import { OciImageStore } from "./oci-image-store.js";
import { imageStoreAvailable } from "./test-support/available.js";
import { type BuiltImage, busyboxLayer, writeOciImage } from "./test-support/oci-layout.js";
import { chunksOf, type TarEntry, tarOf } from "./test-support/tar-layers.js";
import { storeFailure, testStores } from "./test-support/test-stores.js";

const available = await imageStoreAvailable("archive import tests", ["skopeo", "tar"]);

const skopeo = (...args: string[]) => execFileSync("skopeo", ["copy", "--quiet", ...args], { stdio: "ignore" });
/** A tar of the files under `dir` (GNU tar, names relative to it). */
const tarOfDir = (dir: string, out: string) => execFileSync("tar", ["-C", dir, "-cf", out, "."]);

describe.runIf(available)("archive imports", () => {
  let work: string;
  let layout: string;
  let app: BuiltImage;
  const { openStore, keep, closeStores } = testStores(() => work);

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "sbx-import-"));
    layout = join(work, "layout");
    app = await writeOciImage(layout, "app", {
      layers: [busyboxLayer(), [{ name: "home/app/notes.txt", content: "mine\n", uid: 1234, gid: 1234 }]],
      config: { User: "1234:1234", WorkingDir: "/home/app" },
    });
  });
  afterEach(closeStores);
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("imports an OCI archive (skopeo oci-archive:), every blob checked", async () => {
    const archive = join(work, "app-oci.tar");
    skopeo(`oci:${layout}:app`, `oci-archive:${archive}:app`);
    const store = await openStore();
    const image = await store.importArchive(createReadStream(archive));
    expect(image.id).toBe(`im-${app.configDigest.slice(7, 27)}`);
    expect(image.digest).toBe(app.manifestDigest);
    expect(image.layers).toEqual(app.diffIds);
    expect(image.refs).toEqual([]); // "app" alone names no repository
    expect(image.config.user).toBe("1234:1234");
    expect(readFileSync(join(store.layerDir(image.layers[1] as string), "home/app/notes.txt"), "utf8")).toBe("mine\n");
    // The same archive again: the same image, nothing added.
    expect(await store.importArchive(createReadStream(archive))).toEqual(image);
    expect((await store.usage()).layers).toBe(2);
  });

  it("imports Docker 25's docker save (an OCI layout with manifest.json beside it), named by its annotation", async () => {
    const dir = join(work, "docker25");
    cpSync(layout, dir, { recursive: true });
    const index = JSON.parse(readFileSync(join(dir, "index.json"), "utf8"));
    index.manifests[0].annotations = {
      "io.containerd.image.name": "docker.io/library/app:25",
      "org.opencontainers.image.ref.name": "25",
    };
    writeFileSync(join(dir, "index.json"), JSON.stringify(index));
    const blob = (d: string) => `blobs/sha256/${d.slice(7)}`;
    writeFileSync(
      join(dir, "manifest.json"),
      JSON.stringify([
        { Config: blob(app.configDigest), RepoTags: ["app:25"], Layers: app.blobs.map((b) => blob(b.digest)) },
      ]),
    );
    const archive = join(work, "docker25.tar");
    tarOfDir(dir, archive);
    const store = await openStore();
    const image = await store.importArchive(createReadStream(archive));
    expect(image.digest).toBe(app.manifestDigest);
    expect(image.refs).toEqual(["docker.io/library/app:25"]);
  });

  it("imports a docker save archive (skopeo docker-archive:) with its tag as the reference", async () => {
    const archive = join(work, "app-docker.tar");
    skopeo(`oci:${layout}:app`, `docker-archive:${archive}:team/app:1`);
    const store = await openStore();
    const image = await store.importArchive(createReadStream(archive));
    expect(image.id).toBe(`im-${app.configDigest.slice(7, 27)}`);
    expect(image.layers).toEqual(app.diffIds);
    expect(image.refs).toEqual(["docker.io/team/app:1"]);
    expect(await store.get("team/app:1")).toEqual(image);
  });

  it("imports the older docker save layout (<id>/layer.tar, a symlinked layer) and a gzip-compressed archive", async () => {
    const dir = join(work, "legacy");
    const base = await tarOf(busyboxLayer());
    const top = await tarOf([{ name: "etc/motd", content: "legacy\n" }]);
    const sha = (b: Buffer) => execFileSync("sha256sum", { input: b }).toString().slice(0, 64);
    const config = Buffer.from(
      JSON.stringify({
        architecture: "amd64",
        os: "linux",
        config: { Env: ["PATH=/bin"] },
        rootfs: { type: "layers", diff_ids: [`sha256:${sha(base)}`, `sha256:${sha(top)}`] },
      }),
    );
    for (const [id, bytes] of [
      ["aaa", base],
      ["ccc", top],
    ] as const) {
      mkdirSync(join(dir, id), { recursive: true });
      writeFileSync(join(dir, id, "layer.tar"), bytes);
    }
    mkdirSync(join(dir, "bbb"));
    execFileSync("ln", ["-s", "../ccc/layer.tar", join(dir, "bbb", "layer.tar")]);
    writeFileSync(join(dir, `${sha(config)}.json`), config);
    writeFileSync(
      join(dir, "manifest.json"),
      JSON.stringify([
        { Config: `${sha(config)}.json`, RepoTags: ["legacy:1"], Layers: ["aaa/layer.tar", "bbb/layer.tar"] },
      ]),
    );
    const archive = join(work, "legacy.tar");
    tarOfDir(dir, archive);
    const store = await openStore();
    const image = await store.importArchive(chunksOf(gzipSync(readFileSync(archive))));
    expect(image.refs).toEqual(["docker.io/library/legacy:1"]);
    expect(image.id).toBe(`im-${sha(config).slice(0, 20)}`);
    expect(readFileSync(join(store.layerDir(image.layers[1] as string), "etc/motd"), "utf8")).toBe("legacy\n");
  });

  it("refuses an archive whose blob does not match its digest, keeping nothing", async () => {
    const dir = join(work, "tampered");
    cpSync(layout, dir, { recursive: true });
    const blob = join(dir, "blobs/sha256", (app.blobs[1] as { digest: string }).digest.slice(7));
    const bytes = readFileSync(blob);
    bytes[bytes.length - 5] = (bytes[bytes.length - 5] as number) ^ 0xff;
    writeFileSync(blob, bytes);
    const archive = join(work, "tampered.tar");
    tarOfDir(dir, archive);
    const storeDir = mkdtempSync(join(work, "store-"));
    const store = keep(await OciImageStore.open({ dir: storeDir }));
    const error = await storeFailure(store.importArchive(createReadStream(archive)));
    expect(error.kind).toBe("digest-mismatch");
    expect(error.message).toContain((app.blobs[1] as { digest: string }).digest);
    expect(await store.list()).toEqual([]);
    expect((await store.usage()).layers).toBe(0);
    expect(execFileSync("ls", ["-A", join(storeDir, "tmp")]).toString()).toBe("");
  });

  it("refuses what is no image archive", async () => {
    const store = await openStore();
    const notTar = await storeFailure(store.importArchive(chunksOf(Buffer.alloc(4096, 1))));
    expect(notTar.kind).toBe("invalid");
    const entries: TarEntry[] = [{ name: "hello.txt", content: "hi" }];
    const noImage = await storeFailure(store.importArchive(chunksOf(await tarOf(entries))));
    expect(noImage.kind).toBe("invalid");
    expect(noImage.message).toContain("neither an OCI image layout");
    const missing = await storeFailure(
      store.importArchive(
        chunksOf(
          await tarOf([
            { name: "oci-layout", content: '{"imageLayoutVersion":"1.0.0"}' },
            {
              name: "index.json",
              content: JSON.stringify({
                schemaVersion: 2,
                manifests: [
                  {
                    mediaType: "application/vnd.oci.image.manifest.v1+json",
                    digest: app.manifestDigest,
                    size: 10,
                  },
                ],
              }),
            },
          ]),
        ),
      ),
    );
    expect(missing.kind).toBe("invalid");
    expect(missing.message).toContain(`the archive lacks the manifest ${app.manifestDigest}`);
    const nullEntry = await storeFailure(
      store.importArchive(chunksOf(await tarOf([{ name: "manifest.json", content: "[null]" }]))),
    );
    expect(nullEntry.kind).toBe("invalid");
    expect(nullEntry.message).toContain("lacks Config or Layers");
  });

  /** Writes `doc` as a blob of the layout in `dir`; returns its digest and size. */
  const writeJsonBlob = (dir: string, doc: unknown) => {
    const bytes = Buffer.from(JSON.stringify(doc));
    const digest = `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
    writeFileSync(join(dir, "blobs/sha256", digest.slice(7)), bytes);
    return { digest, size: bytes.length };
  };
  const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
  const indexOf = (manifests: unknown[]) => ({ schemaVersion: 2, mediaType: OCI_INDEX, manifests });

  it("reads each manifest of an OCI layout once, however often its indexes name it", async () => {
    // 40 x 40 x 40 paths to one manifest: read along each, that is 64,000 manifests, and an
    // archive with larger fan-outs (a 4 MB index names ~25,000) would hold the server for hours.
    const dir = join(work, "fan-out");
    cpSync(layout, dir, { recursive: true });
    const manifest = {
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: app.manifestDigest,
      size: readFileSync(join(dir, "blobs/sha256", app.manifestDigest.slice(7))).length,
      platform: { os: "linux", architecture: "amd64" },
    };
    const inner = writeJsonBlob(dir, indexOf(Array(40).fill(manifest)));
    const middle = writeJsonBlob(dir, indexOf(Array(40).fill({ mediaType: OCI_INDEX, ...inner })));
    writeFileSync(
      join(dir, "index.json"),
      JSON.stringify(indexOf(Array(40).fill({ mediaType: OCI_INDEX, ...middle }))),
    );
    const archive = join(work, "fan-out.tar");
    tarOfDir(dir, archive);
    const store = await openStore();
    const image = await store.importArchive(createReadStream(archive));
    expect(image.digest).toBe(app.manifestDigest);
    expect(image.layers).toEqual(app.diffIds);
  });

  it("checks blobs named by sha512 digests (hashed as a stream, not read whole)", async () => {
    const dir = join(work, "sha512");
    cpSync(layout, dir, { recursive: true });
    const manifestPath = join(dir, "blobs/sha256", app.manifestDigest.slice(7));
    const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
    mkdirSync(join(dir, "blobs/sha512"));
    for (const layer of manifest.layers) {
      const bytes = readFileSync(join(dir, "blobs/sha256", layer.digest.slice(7)));
      layer.digest = `sha512:${createHash("sha512").update(bytes).digest("hex")}`;
      writeFileSync(join(dir, "blobs/sha512", layer.digest.slice(7)), bytes);
    }
    const rewritten = writeJsonBlob(dir, manifest);
    writeFileSync(
      join(dir, "index.json"),
      JSON.stringify(indexOf([{ mediaType: "application/vnd.oci.image.manifest.v1+json", ...rewritten }])),
    );
    const archive = join(work, "sha512.tar");
    tarOfDir(dir, archive);
    const store = await openStore();
    const image = await store.importArchive(createReadStream(archive));
    expect(image.digest).toBe(rewritten.digest);
    expect(image.layers).toEqual(app.diffIds);
    // A tampered sha512 blob is refused.
    const first = join(dir, "blobs/sha512", manifest.layers[0].digest.slice(7));
    const bytes = readFileSync(first);
    bytes[bytes.length - 5] = (bytes[bytes.length - 5] as number) ^ 0xff;
    writeFileSync(first, bytes);
    tarOfDir(dir, archive);
    const error = await storeFailure((await openStore()).importArchive(createReadStream(archive)));
    expect(error.kind).toBe("digest-mismatch");
  });

  it("refuses an OCI layout whose indexes lead to more manifests than the store reads", async () => {
    const dir = join(work, "many-manifests");
    cpSync(layout, dir, { recursive: true });
    const indexes = Array.from({ length: 300 }, (_, i) => ({
      mediaType: OCI_INDEX,
      ...writeJsonBlob(dir, { ...indexOf([]), annotations: { n: String(i) } }),
    }));
    writeFileSync(join(dir, "index.json"), JSON.stringify(indexOf(indexes)));
    const archive = join(work, "many-manifests.tar");
    tarOfDir(dir, archive);
    const store = await openStore();
    const error = await storeFailure(store.importArchive(createReadStream(archive)));
    expect(error.kind).toBe("invalid");
    expect(error.message).toBe("the archive's index.json leads to more than 256 manifests and indexes");
  });

  it("refuses a docker save manifest.json listing more images than the store reads", async () => {
    // Each entry's config is read and parsed: 100,000 entries naming one 8 MB config would be
    // hours of parsing.
    const config = JSON.stringify({
      architecture: "amd64",
      os: "linux",
      rootfs: { type: "layers", diff_ids: [] },
      history: Array.from({ length: 2000 }, () => ({ created_by: "x".repeat(100) })),
    });
    const archive = await tarOf([
      { name: "config.json", content: config },
      { name: "manifest.json", content: JSON.stringify(Array(300).fill({ Config: "config.json", Layers: [] })) },
    ]);
    const store = await openStore();
    const error = await storeFailure(store.importArchive(chunksOf(archive)));
    expect(error.kind).toBe("invalid");
    expect(error.message).toBe("the archive's manifest.json lists more than 256 images");
  });

  it("stops spooling an archive that unpacks to more than an image may have (a gzip bomb), keeping nothing", async () => {
    const storeDir = mkdtempSync(join(work, "store-"));
    const store = keep(await OciImageStore.open({ dir: storeDir, maxImageBytes: 8 * 1024 * 1024 }));
    const bomb = gzipSync(await tarOf([{ name: "blobs/sha256/zeros", content: Buffer.alloc(64 * 1024 * 1024) }]));
    expect(bomb.length).toBeLessThan(1024 * 1024);
    const error = await storeFailure(store.importArchive(chunksOf(bomb)));
    expect(error.kind).toBe("quota");
    expect(error.message).toBe("the archive unpacks to more than 8388608 bytes, the store's limit for one image");
    expect(readdirSync(join(storeDir, "tmp"))).toEqual([]);
  });

  it("stops spooling an archive of more entries than the limit", async () => {
    const dir = mkdtempSync(join(work, "spool-"));
    const entries: TarEntry[] = Array.from({ length: 20 }, (_, i) => ({ name: `f${i}`, content: "" }));
    const error = await storeFailure(
      spoolArchive(chunksOf(await tarOf(entries)), dir, { maxBytes: 1024 * 1024, maxEntries: 10 }),
    );
    expect(error.kind).toBe("quota");
    expect(error.message).toBe("the archive has more than 10 entries, the store's limit for one archive");
  });
});
