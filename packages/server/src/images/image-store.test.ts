/**
 * The image store's own bookkeeping, with images pulled from a real registry on loopback:
 * delete and garbage collection, images in use, disk usage, who owns what in the store, the
 * unpack limits (decompression bombs) and a full disk during a pull (a small tmpfs).
 */
import { execFileSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { gzipSync } from "node:zlib";
import { parseImageReference } from "@sbx/proto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_LAYER_ID_BASE, OciImageStore, type OciImageStoreOptions } from "./oci-image-store.js";
import type { ImageStoreError } from "./store-errors.js";
import { imageStoreAvailable } from "./test-support/available.js";
import { type BuiltImage, busyboxLayer, randomFileLayer, writeOciImage } from "./test-support/oci-layout.js";
import { startTestRegistry, type TestRegistry } from "./test-support/registry.js";
import { storeFailure, testStores } from "./test-support/test-stores.js";

const available = await imageStoreAvailable("image store tests", ["docker-registry", "skopeo"]);
const MiB = 1024 * 1024;

/** Every path under `dir` (lstat, never following a symlink). */
function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    out.push(path);
    if (lstatSync(path).isDirectory()) walk(path, out);
  }
  return out;
}

describe.runIf(available)("image store", () => {
  let work: string;
  let registry: TestRegistry;
  const { openStore, closeStore, closeStores } = testStores(() => work);
  const built = {} as Record<
    "busybox" | "app" | "big" | "bomb" | "twoBombs" | "small" | "twice" | "padded" | "one" | "other",
    BuiltImage
  >;
  const ref = (name: string) => parseImageReference(`${registry.host}/${name}`);

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "sbx-store-"));
    const layout = join(work, "layout");
    registry = await startTestRegistry("none");
    const zeros = (name: string, bytes: number) => [{ name, content: Buffer.alloc(bytes) }];
    built.busybox = await writeOciImage(layout, "busybox", { layers: [busyboxLayer()] });
    built.app = await writeOciImage(layout, "app", {
      layers: [busyboxLayer(), [{ name: "home/app/data", content: "x", uid: 1234, gid: 1234, mode: 0o4750 }]],
    });
    built.big = await writeOciImage(layout, "big", {
      layers: [randomFileLayer("a", MiB), randomFileLayer("b", 6 * MiB)],
    });
    built.bomb = await writeOciImage(layout, "bomb", { layers: [zeros("zeros", 8 * MiB)] });
    built.twoBombs = await writeOciImage(layout, "two", { layers: [zeros("one", MiB), zeros("two", MiB + 1)] });
    built.small = await writeOciImage(layout, "small", { layers: [[{ name: "hello", content: "hi\n" }]] });
    built.twice = await writeOciImage(layout, "twice", { layers: [[], [{ name: "f", content: "f" }], []] });
    // Blobs far larger than what they unpack to: gzip ignores zeros after its stream (and a
    // registry could as well send empty gzip members, or zstd skippable frames, for ever).
    built.padded = await writeOciImage(layout, "padded", {
      layers: [[{ name: "a", content: "a" }], [{ name: "b", content: "b" }]],
      blobOf: (tar) => Buffer.concat([gzipSync(tar), Buffer.alloc(3 * MiB)]),
    });
    built.one = await writeOciImage(layout, "one", { layers: [randomFileLayer("one", 3 * MiB)] });
    built.other = await writeOciImage(layout, "other", { layers: [randomFileLayer("other", 3 * MiB)] });
    for (const name of ["busybox", "app", "big", "bomb", "two", "small", "twice", "padded", "one", "other"])
      await registry.push(layout, name, name);
  });
  afterEach(closeStores);
  afterAll(async () => {
    await registry?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it("deletes an image and the layers no other image uses; refuses an image in use", async () => {
    const used = new Set<string>();
    const store = await openStore({ inUse: (id) => used.has(id) });
    const app = await store.pull(ref("app:app"));
    const busybox = await store.pull(ref("busybox:busybox"));
    const [base, top] = app.layers as [string, string];
    expect(busybox.layers).toEqual([base]);
    expect((await store.usage()).layers).toBe(2);
    // Each layer dir has a token of its own while the store keeps it (see layerToken).
    const tokens = [store.layerToken(base), store.layerToken(top)];
    expect(tokens[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(tokens[1]).not.toBe(tokens[0]);
    expect(store.layerToken(top)).toBe(tokens[1]);

    used.add(app.id);
    const inUse = await storeFailure(store.delete(app.id));
    expect(inUse.kind).toBe("in-use");
    used.clear();

    await store.delete(app.id);
    expect(existsSync(store.layerDir(top))).toBe(false);
    expect(existsSync(store.layerDir(base))).toBe(true);
    expect(await store.get(app.id)).toBeUndefined();
    expect(await store.get(`${registry.host}/app:app`)).toBeUndefined();
    expect((await store.list()).map((i) => i.id)).toEqual([busybox.id]);

    await store.delete(busybox.id);
    expect(existsSync(store.layerDir(base))).toBe(false);
    expect(await store.usage()).toEqual({ images: 0, layers: 0, layerBytes: 0, partialDownloadBytes: 0 });
    expect((await storeFailure(store.delete(busybox.id))).kind).toBe("not-found");
    expect(store.layerToken(top)).toBeUndefined();

    // Pulled again: the same dirs by name, never the same tokens.
    await store.pull(ref("app:app"));
    const again = [store.layerToken(base), store.layerToken(top)];
    expect(again.every((t) => t !== undefined && !tokens.includes(t))).toBe(true);
  });

  it("pulls an image that has one layer twice (old Docker's empty layers), and deletes it", async () => {
    const store = await openStore();
    const image = await store.pull(ref("twice:twice"));
    expect(image.layers).toEqual(built.twice.diffIds);
    expect(image.layers[0]).toBe(image.layers[2]);
    expect((await store.usage()).layers).toBe(2);
    await store.delete(image.id);
    expect((await store.usage()).layers).toBe(0);
  });

  it("reports disk usage: each image's size, and the whole store's", async () => {
    const store = await openStore();
    const app = await store.pull(ref("app:app"));
    const busybox = await store.pull(ref("busybox:busybox"));
    expect(busybox.sizeBytes).toBeGreaterThan(MiB);
    expect(app.sizeBytes).toBe(busybox.sizeBytes + 1);
    expect(await store.usage()).toEqual({
      images: 2,
      layers: 2,
      layerBytes: app.sizeBytes,
      partialDownloadBytes: 0,
    });
  });

  it("owns every file in the store by root or by the layer id range, never a host user, in a root-only dir", async () => {
    const dir = mkdtempSync(join(work, "owners-"));
    const store = await openStore({ dir });
    const app = await store.pull(ref("app:app"));
    expect(lstatSync(dir).mode & 0o777).toBe(0o700);
    const inRange = (id: number) => id >= DEFAULT_LAYER_ID_BASE && id <= DEFAULT_LAYER_ID_BASE + 65_535;
    for (const layer of app.layers) {
      const root = store.layerDir(layer);
      for (const path of [root, ...walk(root)]) {
        const st = lstatSync(path);
        expect(inRange(st.uid) && inRange(st.gid), path).toBe(true);
      }
    }
    for (const path of walk(dir)) {
      const st = lstatSync(path);
      expect(st.uid === 0 || inRange(st.uid), path).toBe(true);
    }
    const setuid = lstatSync(join(store.layerDir(app.layers[1] as string), "home/app/data"));
    expect([setuid.uid, setuid.mode & 0o7777]).toEqual([DEFAULT_LAYER_ID_BASE + 1234, 0o4750]);
  });

  it("refuses a layer that unpacks past the layer limit (a decompression bomb), keeping nothing", async () => {
    const dir = mkdtempSync(join(work, "bomb-"));
    const store = await openStore({ dir, maxLayerBytes: 2 * MiB });
    expect(built.bomb.blobs[0]?.size).toBeLessThan(64 * 1024);
    const error = await storeFailure(store.pull(ref("bomb:bomb")));
    expect(error.kind).toBe("quota");
    expect(error.message).toContain(`unpacks to more than ${2 * MiB} bytes, the store's limit for one layer`);
    expect(readdirSync(join(dir, "layers"))).toEqual([]);
    expect(readdirSync(join(dir, "tmp"))).toEqual([]);
    expect(readdirSync(join(dir, "downloads"))).toEqual([]);
  });

  it("refuses, before downloading them, layer blobs larger than the layer or image limit", async () => {
    // Compressed bytes are bounded by the blob's size in its manifest: one that says more than
    // the limits would have the store download (and keep, for resuming) what it says.
    const dir = mkdtempSync(join(work, "padded-"));
    const store = await openStore({ dir, maxLayerBytes: 2 * MiB });
    const blob = built.padded.blobs[0] as { digest: string; size: number };
    const error = await storeFailure(store.pull(ref("padded:padded")));
    expect(error.kind).toBe("quota");
    expect(error.message).toBe(
      `layer 1 of ${registry.host}/padded is a blob of ${blob.size} bytes, over the ${2 * MiB} bytes the store allows one layer`,
    );
    expect(readdirSync(join(dir, "downloads"))).toEqual([]);
    const image = await openStore({ maxImageBytes: 5 * MiB });
    const total = built.padded.blobs.reduce((sum, b) => sum + b.size, 0);
    const imageError = await storeFailure(image.pull(ref("padded:padded")));
    expect(imageError.kind).toBe("quota");
    expect(imageError.message).toBe(
      `${registry.host}/padded has layer blobs of ${total} bytes in all, over the ${5 * MiB} bytes the store allows one image`,
    );
  });

  it("refuses an image whose layers together unpack past the image limit", async () => {
    const dir = mkdtempSync(join(work, "bombs-"));
    const store = await openStore({ dir, maxImageBytes: 2 * MiB });
    const error = await storeFailure(store.pull(ref("two:two")));
    expect(error.kind).toBe("quota");
    expect(error.message).toContain(`unpacks to more than ${2 * MiB} bytes, the store's limit for one image`);
    expect(await store.list()).toEqual([]);
    expect(readdirSync(join(dir, "layers"))).toEqual([]);
    expect(readdirSync(join(dir, "tmp"))).toEqual([]);
  });

  it("refuses a pull that would take the store past its size limit, and removes what it had written", async () => {
    const dir = mkdtempSync(join(work, "full-"));
    const store = await openStore({ dir, maxStoreBytes: 4 * MiB });
    const error = await storeFailure(store.pull(ref("big:big")));
    expect(error.kind).toBe("quota");
    expect(error.message).toBe(
      `${registry.host}/big does not fit in the image store, which may hold ${4 * MiB} bytes of layers: delete images to make room`,
    );
    expect(await store.list()).toEqual([]);
    for (const sub of ["layers", "tmp", "downloads"]) expect(readdirSync(join(dir, sub)), sub).toEqual([]);
    // What fits still does.
    expect((await store.pull(ref("small:small"))).layers).toEqual(built.small.diffIds);
  });

  it("holds its size limit under concurrent pulls that fit one at a time but not together", async () => {
    const dir = mkdtempSync(join(work, "concurrent-"));
    const limit = 5 * MiB;
    const store = await openStore({ dir, maxStoreBytes: limit });
    const results = await Promise.allSettled([store.pull(ref("one:one")), store.pull(ref("other:other"))]);
    const refused = results.filter((r) => r.status === "rejected").map((r) => (r.reason as ImageStoreError).kind);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    expect(refused.every((kind) => kind === "quota")).toBe(true);
    const usage = await store.usage();
    expect(usage.layerBytes).toBeLessThanOrEqual(limit);
    expect(usage.images).toBe(2 - refused.length);
    expect(readdirSync(join(dir, "layers"))).toHaveLength(usage.layers);
    expect(readdirSync(join(dir, "tmp"))).toEqual([]);
  });

  it("counts the layers it has against its size limit: a full store pulls nothing more, but what it has", async () => {
    const dir = mkdtempSync(join(work, "limit-"));
    const unlimited = await openStore({ dir });
    await unlimited.pull(ref("busybox:busybox"));
    const { layerBytes } = await unlimited.usage();
    closeStore(unlimited);
    const store = await openStore({ dir, maxStoreBytes: layerBytes });
    const error = await storeFailure(store.pull(ref("small:small")));
    expect(error.kind).toBe("quota");
    expect(error.message).toContain(`does not fit in the image store, which may hold ${layerBytes} bytes of layers`);
    expect(readdirSync(join(dir, "downloads"))).toEqual([]);
    // An image made of layers it has takes no room.
    expect((await store.pull(ref("busybox:busybox"))).layers).toEqual(built.busybox.diffIds);
    expect((await store.usage()).layerBytes).toBe(layerBytes);
  });

  it("syncs its file system after layers were added; after a reboot it drops the layers never synced", async () => {
    const dir = mkdtempSync(join(work, "durable-"));
    const rows = () => {
      const db = new DatabaseSync(join(dir, "images.db"));
      try {
        return db.prepare("SELECT diff_id, synced FROM layers ORDER BY rowid").all() as { synced: number }[];
      } finally {
        db.close();
      }
    };
    const reopen = async (options: Partial<OciImageStoreOptions>) => {
      closeStores();
      return await openStore({ dir, ...options });
    };
    let store = await reopen({ diskSyncDelayMs: 10 });
    const busybox = await store.pull(ref("busybox:busybox"));
    while (rows().some((row) => row.synced === 0)) await new Promise((resolve) => setTimeout(resolve, 20));
    store = await reopen({ diskSyncDelayMs: 3_600_000 });
    const small = await store.pull(ref("small:small"));
    expect(rows().map((row) => row.synced)).toEqual([1, 0]);
    // The server restarted (a crash), the machine did not: the page cache had every file.
    store = await reopen({});
    expect((await store.list()).map((i) => i.id).sort()).toEqual([busybox.id, small.id].sort());
    // A reboot (a power cut): what was never synced may have lost its files.
    closeStores();
    const db = new DatabaseSync(join(dir, "images.db"));
    db.exec("UPDATE layers SET boot_id = 'an-earlier-boot'");
    db.close();
    store = await reopen({});
    expect((await store.list()).map((i) => i.id)).toEqual([busybox.id]);
    expect(existsSync(store.layerDir(small.layers[0] as string))).toBe(false);
    expect(existsSync(store.layerDir(busybox.layers[0] as string))).toBe(true);
  });

  it("syncs, once restarted, the layers an earlier run left unsynced (it stopped before its sync)", async () => {
    const dir = mkdtempSync(join(work, "restart-sync-"));
    const unsynced = () => {
      const db = new DatabaseSync(join(dir, "images.db"));
      try {
        return db.prepare("SELECT diff_id FROM layers WHERE synced = 0").all().length;
      } finally {
        db.close();
      }
    };
    const first = await openStore({ dir, diskSyncDelayMs: 3_600_000 });
    await first.pull(ref("small:small"));
    closeStore(first);
    expect(unsynced()).toBe(1);
    await openStore({ dir, diskSyncDelayMs: 10 });
    while (unsynced() > 0) await new Promise((resolve) => setTimeout(resolve, 20));
  });

  it("waits the whole deadline when it is past Node's 32-bit timer limit (2^31-1 ms)", async () => {
    for (const pullTimeoutMs of [2 ** 31, 2 ** 40]) {
      const store = await openStore({ pullTimeoutMs });
      expect((await store.pull(ref("small:small"))).layers).toEqual(built.small.diffIds);
    }
  });

  it("refuses options that are not whole numbers in range, naming them", async () => {
    const dir = join(work, "never-made");
    for (const [name, value] of [
      ["pullTimeoutMs", 0],
      ["pullTimeoutMs", 1.5],
      ["pullTimeoutMs", Number.POSITIVE_INFINITY],
      ["diskSyncDelayMs", -1],
      ["maxStoreBytes", Number.NaN],
      ["layerWorkers", 0],
    ] as const) {
      await expect(OciImageStore.open({ dir, [name]: value })).rejects.toThrow(
        new RangeError(
          `the image store's ${name} must be a whole number of ${name === "layerWorkers" ? "workers" : name === "maxStoreBytes" ? "bytes" : "ms"} (at least ${name === "diskSyncDelayMs" || name === "maxStoreBytes" ? 0 : 1}), got ${value}`,
        ),
      );
    }
    expect(existsSync(dir)).toBe(false);
  });

  it("answers quota when the disk fills during a pull, and removes what the pull had written", async () => {
    const mount = mkdtempSync(join(work, "tmpfs-"));
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", mount]);
    let store: OciImageStore | undefined;
    try {
      const dir = join(mount, "store");
      mkdirSync(dir, { mode: 0o700 });
      store = await OciImageStore.open({ dir });
      const error = await storeFailure(store.pull(ref("big:big")));
      expect(error.kind).toBe("quota");
      expect(error.message).toContain("disk is full");
      expect(readdirSync(join(dir, "tmp"))).toEqual([]);
      expect(readdirSync(join(dir, "downloads"))).toEqual([]);
      expect(readdirSync(join(dir, "layers"))).toEqual([]);
      expect(await store.list()).toEqual([]);
      // The store goes on working with the room it has.
      expect((await store.pull(ref("small:small"))).layers).toEqual(built.small.diffIds);
    } finally {
      store?.close();
      execFileSync("umount", [mount]);
    }
  });

  it("refuses a layer id range that host users have", async () => {
    await expect(OciImageStore.open({ dir: join(work, "never"), layerIdBase: 1 })).rejects.toThrow(
      /the layer id range 1-65536 overlaps ids in \/etc\/passwd/,
    );
    expect(existsSync(join(work, "never"))).toBe(false);
  });
});
