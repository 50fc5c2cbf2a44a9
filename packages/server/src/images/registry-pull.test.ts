/**
 * Pulls from real registries on loopback (Debian's docker-registry), holding images the tests
 * build offline and push with skopeo: tags and digests, platform choice from an index, OCI
 * and Docker schema 2 manifests, progress, and every way a pull can fail (not found, refused,
 * unreachable and resumed, tampered, rate-limited), some through a counting proxy.
 */
import { execFileSync } from "node:child_process";
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { parseImageReference } from "@sbx/proto";
import type { PullProgress } from "@sbx/server-kit";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_LAYER_ID_BASE, OciImageStore } from "./oci-image-store.js";
import { imageStoreAvailable } from "./test-support/available.js";
import {
  type BuiltImage,
  busyboxLayer,
  randomFileLayer,
  writeOciImage,
  writeOciIndex,
} from "./test-support/oci-layout.js";
import { startTestRegistry, TEST_PASSWORD, TEST_USER, type TestRegistry } from "./test-support/registry.js";
import { RegistryProxy, TestCdn } from "./test-support/registry-proxy.js";
import { storeFailure, testStores } from "./test-support/test-stores.js";

const TOOLS = ["docker-registry", "skopeo", "htpasswd", "openssl"];
const available = await imageStoreAvailable("registry pull tests", TOOLS);
const ref = (text: string) => parseImageReference(text);

describe.runIf(available)("pulls from a registry", () => {
  let work: string;
  let layout: string;
  let registry: TestRegistry;
  const { openStore, keep, closeStores } = testStores(() => work);
  const built = {} as Record<
    "busybox" | "app" | "multiAmd64" | "multiArm64" | "big" | "zstd" | "plain" | "whiteouts" | "padded",
    BuiltImage
  >;
  let indexDigest: string;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "sbx-pull-"));
    layout = join(work, "layout");
    registry = await startTestRegistry("none");
    built.busybox = await writeOciImage(layout, "busybox", { layers: [busyboxLayer()] });
    built.app = await writeOciImage(layout, "app", {
      layers: [
        busyboxLayer(),
        [
          { name: "home/app/", type: "directory", uid: 1234, gid: 1234, mode: 0o750 },
          { name: "home/app/notes.txt", content: "mine\n", uid: 1234, gid: 1234 },
        ],
      ],
      config: { User: "app", WorkingDir: "/home/app", Env: ["PATH=/bin", "GREETING=hello"], Cmd: ["sh"] },
    });
    const multi = await writeOciIndex(layout, "multi", [
      { layers: [[{ name: "arch", content: "amd64\n" }]], platform: { os: "linux", architecture: "amd64" } },
      {
        layers: [[{ name: "arch", content: "arm64\n" }]],
        platform: { os: "linux", architecture: "arm64", variant: "v8" },
      },
    ]);
    indexDigest = multi.indexDigest;
    built.multiAmd64 = multi.images[0] as BuiltImage;
    built.multiArm64 = multi.images[1] as BuiltImage;
    built.big = await writeOciImage(layout, "big", { layers: [busyboxLayer(), randomFileLayer("data/blob", 3 << 20)] });
    built.whiteouts = await writeOciImage(layout, "whiteouts", {
      layers: [
        [
          { name: "etc/keep", content: "kept\n" },
          { name: "etc/gone", content: "gone\n" },
          { name: "var/cache/old", content: "old\n" },
        ],
        [
          { name: "etc/.wh.gone", content: "" },
          { name: "var/cache/.wh..wh..opq", content: "" },
          { name: "var/cache/new", content: "new\n" },
        ],
      ],
    });
    built.zstd = await writeOciImage(layout, "zstd", {
      layers: [[{ name: "z", content: "zstd\n" }]],
      compression: "zstd",
    });
    built.plain = await writeOciImage(layout, "plain", {
      layers: [[{ name: "p", content: "plain\n" }]],
      compression: "none",
    });
    // gzip ignores what follows its stream: a byte changed there shows only in the blob's digest.
    built.padded = await writeOciImage(layout, "padded", {
      layers: [busyboxLayer(), randomFileLayer("data/blob", 1 << 20)],
      blobOf: (tar) => Buffer.concat([gzipSync(tar), Buffer.alloc(4096)]),
    });
    await registry.push(layout, "busybox", "library/busybox");
    await registry.push(layout, "app", "team/app");
    await registry.push(layout, "app", "team/app-docker", { format: "v2s2" });
    await registry.push(layout, "multi", "multi", { all: true });
    await registry.push(layout, "big", "big");
    await registry.push(layout, "zstd", "zstd");
    await registry.push(layout, "whiteouts", "whiteouts");
    await registry.push(layout, "plain", "plain");
    await registry.push(layout, "padded", "padded");
  });
  afterEach(closeStores);
  afterAll(async () => {
    await registry?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it("pulls by tag: records the image, unpacks its layers with shifted owners, and applies its config", async () => {
    const store = await openStore();
    const image = await store.pull(ref(`${registry.host}/team/app:app`));
    expect(image.id).toBe(`im-${built.app.configDigest.slice(7, 27)}`);
    expect(image.digest).toBe(built.app.manifestDigest);
    expect(image.refs).toEqual([`${registry.host}/team/app:app`]);
    expect(image.layers).toEqual(built.app.diffIds);
    expect(image.config).toEqual({
      env: ["PATH=/bin", "GREETING=hello"],
      workingDir: "/home/app",
      user: "app",
      entrypoint: undefined,
      cmd: ["sh"],
    });
    expect(image.platform).toEqual({ os: "linux", architecture: "amd64", variant: undefined });
    const top = store.layerDir(image.layers[1] as string);
    const notes = lstatSync(join(top, "home/app/notes.txt"));
    expect([notes.uid, notes.gid]).toEqual([DEFAULT_LAYER_ID_BASE + 1234, DEFAULT_LAYER_ID_BASE + 1234]);
    const base = store.layerDir(image.layers[0] as string);
    expect(readFileSync(join(base, "bin/busybox")).equals(readFileSync("/usr/bin/busybox"))).toBe(true);
    expect(image.sizeBytes).toBeGreaterThan(readFileSync("/usr/bin/busybox").length);
    expect(await store.get(image.id)).toEqual(image);
    expect(await store.get(`${registry.host}/team/app:app`)).toEqual(image);
    expect(await store.get(image.digest)).toEqual(image);
    expect((await store.list()).map((i) => i.id)).toEqual([image.id]);
  });

  it("pulls a Docker schema 2 manifest (skopeo --format v2s2) to the same image", async () => {
    const store = await openStore();
    const image = await store.pull(ref(`${registry.host}/team/app-docker:app`));
    expect(image.id).toBe(`im-${built.app.configDigest.slice(7, 27)}`);
    expect(image.digest).not.toBe(built.app.manifestDigest);
    expect(image.layers).toEqual(built.app.diffIds);
  });

  it("pulls layers that stack in a real overlay mount as the image says (whiteouts, opaque dirs)", async () => {
    const store = await openStore();
    const image = await store.pull(ref(`${registry.host}/whiteouts:whiteouts`));
    const mnt = mkdtempSync(join(work, "mnt-"));
    const lower = [...image.layers].reverse().map((l) => store.layerDir(l));
    execFileSync("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${lower.join(":")}`, mnt]);
    try {
      expect(readdirSync(join(mnt, "etc"))).toEqual(["keep"]);
      expect(readdirSync(join(mnt, "var/cache"))).toEqual(["new"]);
      expect(readFileSync(join(mnt, "var/cache/new"), "utf8")).toBe("new\n");
    } finally {
      execFileSync("umount", [mnt]);
    }
  });

  it("pulls zstd-compressed and uncompressed layers", async () => {
    const store = await openStore();
    const zstd = await store.pull(ref(`${registry.host}/zstd:zstd`));
    expect(readFileSync(join(store.layerDir(zstd.layers[0] as string), "z"), "utf8")).toBe("zstd\n");
    const plain = await store.pull(ref(`${registry.host}/plain:plain`));
    expect(readFileSync(join(store.layerDir(plain.layers[0] as string), "p"), "utf8")).toBe("plain\n");
  });

  it("pulls by digest, and a second pull by that digest asks the registry nothing", async () => {
    const proxy = await RegistryProxy.start(registry.host);
    try {
      const store = await openStore();
      const digest = built.busybox.manifestDigest as string;
      const image = await store.pull(ref(`${proxy.host}/library/busybox@${digest}`));
      expect(image.digest).toBe(digest);
      const asked = proxy.requests.length;
      expect(asked).toBeGreaterThan(0);
      const again = await store.pull(ref(`${proxy.host}/library/busybox@${digest}`));
      expect(again.id).toBe(image.id);
      expect(proxy.requests.length).toBe(asked);
      // A tag is looked up again (its manifest only: no config, no layer).
      await store.pull(ref(`${proxy.host}/library/busybox:busybox`));
      expect(proxy.requests.slice(asked).map((r) => r.path)).toEqual(["/v2/library/busybox/manifests/busybox"]);
      expect((await store.get(image.id))?.refs).toEqual([
        `${proxy.host}/library/busybox:busybox`,
        `${proxy.host}/library/busybox@${digest}`,
      ]);
    } finally {
      await proxy.close();
    }
  });

  it("chooses the host's platform from an index, or the one it is told", async () => {
    const amd64 = await openStore({ platform: { os: "linux", architecture: "amd64" } });
    const a = await amd64.pull(ref(`${registry.host}/multi:multi`));
    expect(a.digest).toBe(built.multiAmd64.manifestDigest);
    expect(readFileSync(join(amd64.layerDir(a.layers[0] as string), "arch"), "utf8")).toBe("amd64\n");
    expect(await amd64.get(indexDigest)).toEqual(a);
    const arm64 = await openStore({ platform: { os: "linux", architecture: "arm64", variant: "v8" } });
    const b = await arm64.pull(ref(`${registry.host}/multi@${indexDigest}`));
    expect(b.digest).toBe(built.multiArm64.manifestDigest);
    expect(b.platform).toEqual({ os: "linux", architecture: "arm64", variant: "v8" });
    const s390x = await openStore({ platform: { os: "linux", architecture: "s390x" } });
    const error = await storeFailure(s390x.pull(ref(`${registry.host}/multi:multi`)));
    expect(error.kind).toBe("unsupported");
    expect(error.message).toContain("no image for linux/s390x (it has linux/amd64, linux/arm64/v8)");
    const wrongArch = await storeFailure(s390x.pull(ref(`${registry.host}/library/busybox:busybox`)));
    expect(wrongArch.kind).toBe("unsupported");
  });

  it("answers not-found naming the repository or the tag", async () => {
    const store = await openStore();
    const repo = await storeFailure(store.pull(ref(`${registry.host}/no/such-repo:1`)));
    expect(repo.kind).toBe("not-found");
    expect(repo.message).toContain(`${registry.host}/no/such-repo`);
    const tag = await storeFailure(store.pull(ref(`${registry.host}/library/busybox:nope`)));
    expect(tag.kind).toBe("not-found");
    expect(tag.message).toContain("tag nope not found");
    const digest = await storeFailure(store.pull(ref(`${registry.host}/library/busybox@sha256:${"0".repeat(64)}`)));
    expect(digest.kind).toBe("not-found");
  });

  it("reports progress over the compressed blobs, up to their total", async () => {
    const store = await openStore();
    const events: PullProgress[] = [];
    await store.pull(ref(`${registry.host}/big:big`), { onProgress: (p) => events.push(p) });
    const total = built.big.blobs.reduce((sum, b) => sum + b.size, 0);
    expect(events.length).toBeGreaterThan(3);
    expect(events.every((e) => e.bytesTotal === total)).toBe(true);
    for (let i = 1; i < events.length; i++) {
      expect((events[i] as PullProgress).bytesDone).toBeGreaterThan((events[i - 1] as PullProgress).bytesDone);
    }
    expect(events.at(-1)?.bytesDone).toBe(total);
  });

  it("refuses a tampered blob (digest-mismatch) and keeps nothing of it", async () => {
    const proxy = await RegistryProxy.start(registry.host);
    try {
      const dir = mkdtempSync(join(work, "store-"));
      const store = await openStore({ dir });
      const layer = built.big.blobs[1]?.digest as string;
      proxy.tamperBlob(layer);
      const error = await storeFailure(store.pull(ref(`${proxy.host}/big:big`)));
      expect(error.kind).toBe("digest-mismatch");
      expect(error.message).toContain(`the blob ${layer} of layer 2 of ${proxy.host}/big does not match its digest`);
      expect(await store.list()).toEqual([]);
      // Nothing of the tampered blob is kept (the other layer's download may be, for a retry).
      expect(readdirSync(join(dir, "downloads")).filter((f) => f.includes(layer.slice(7)))).toEqual([]);
      expect(existsSync(store.layerDir(built.big.diffIds[1] as string))).toBe(false);
      expect(readdirSync(join(dir, "tmp"))).toEqual([]);
    } finally {
      await proxy.close();
    }
  });

  it("refuses a blob whose digest fails only at its last byte, once its layer was unpacked: nothing of it is kept", async () => {
    const proxy = await RegistryProxy.start(registry.host);
    try {
      const dir = mkdtempSync(join(work, "store-"));
      const store = await openStore({ dir });
      const layer = built.padded.blobs[1]?.digest as string;
      proxy.tamperBlob(layer, { at: "last" });
      const error = await storeFailure(store.pull(ref(`${proxy.host}/padded:padded`)));
      expect(error.kind).toBe("digest-mismatch");
      expect(error.message).toContain(`the blob ${layer} of layer 2 of ${proxy.host}/padded does not match its digest`);
      expect(proxy.blobGets(layer).map((r) => r.bytes)).toEqual([built.padded.blobs[1]?.size]);
      expect(await store.list()).toEqual([]);
      expect(readdirSync(join(dir, "downloads")).filter((f) => f.includes(layer.slice(7)))).toEqual([]);
      expect(existsSync(store.layerDir(built.padded.diffIds[1] as string))).toBe(false);
      expect(readdirSync(join(dir, "tmp"))).toEqual([]);
    } finally {
      await proxy.close();
    }
  });

  it("refuses a manifest that does not match the registry's Docker-Content-Digest", async () => {
    const proxy = await RegistryProxy.start(registry.host);
    try {
      const manifest = readFileSync(join(layout, "blobs/sha256", built.busybox.manifestDigest.slice(7)));
      proxy.answer("/v2/library/busybox/manifests/busybox", {
        status: 200,
        headers: {
          "content-type": "application/vnd.oci.image.manifest.v1+json",
          "docker-content-digest": `sha256:${"1".repeat(64)}`,
        },
        body: manifest,
      });
      const store = await openStore();
      const error = await storeFailure(store.pull(ref(`${proxy.host}/library/busybox:busybox`)));
      expect(error.kind).toBe("digest-mismatch");
    } finally {
      await proxy.close();
    }
  });

  it("resumes a download broken off mid-way at once, asking only for the rest", async () => {
    const proxy = await RegistryProxy.start(registry.host);
    try {
      const store = await openStore();
      const layer = built.big.blobs[1] as { digest: string; size: number };
      const cutAt = Math.floor(layer.size / 3);
      proxy.cutBlobOnce(layer.digest, cutAt);
      const image = await store.pull(ref(`${proxy.host}/big:big`));
      // The rest from where the store had got (bytes still in flight when the connection broke
      // are asked for again).
      const [first, second, ...more] = proxy.blobGets(layer.digest);
      expect([first?.range, first?.bytes, more]).toEqual([undefined, cutAt, []]);
      const resumedAt = Number(/^bytes=(\d+)-$/.exec(second?.range ?? "")?.[1]);
      expect(resumedAt > 0 && resumedAt <= cutAt).toBe(true);
      expect(second?.bytes).toBe(layer.size - resumedAt);
      expect(lstatSync(join(store.layerDir(image.layers[1] as string), "data/blob")).size).toBe(3 << 20);
    } finally {
      await proxy.close();
    }
  });

  it("fails with connection when the registry goes away mid-pull, and a retry resumes: it asks only for the rest", async () => {
    const proxy = await RegistryProxy.start(registry.host);
    try {
      const dir = mkdtempSync(join(work, "store-"));
      const store = await openStore({ dir });
      const layer = built.big.blobs[1] as { digest: string; size: number };
      const partialOf = () =>
        readdirSync(join(dir, "downloads"))
          .filter((name) => name.startsWith(layer.digest.replace(":", "-")))
          .map((name) => join(dir, "downloads", name));
      const cutAt = Math.floor(layer.size / 2);
      // The registry's address goes away mid-blob (the proxy in front of it stops listening).
      proxy.cutBlobOnce(layer.digest, cutAt, { thenGone: true });
      const broken = await storeFailure(store.pull(ref(`${proxy.host}/big:big`)));
      expect(broken.kind).toBe("connection");
      expect(broken.message).toContain(`could not reach registry ${proxy.host}`);
      const [partial] = partialOf();
      const kept = lstatSync(partial as string).size;
      expect(kept > 0 && kept <= cutAt).toBe(true);
      // Back again: the retry resumes where the first pull stopped.
      await proxy.listen();
      const before = proxy.requests.length;
      const image = await store.pull(ref(`${proxy.host}/big:big`));
      const resumed = proxy.requests.slice(before).filter((r) => r.path.endsWith(layer.digest));
      expect(resumed.map((r) => [r.range, r.status, r.bytes])).toEqual([[`bytes=${kept}-`, 206, layer.size - kept]]);
      expect(lstatSync(join(store.layerDir(image.layers[1] as string), "data/blob")).size).toBe(3 << 20);
      expect(partialOf()).toEqual([]);
    } finally {
      await proxy.close();
    }
  });

  it("shares one download between concurrent pulls of one image and of images sharing a layer", async () => {
    const proxy = await RegistryProxy.start(registry.host);
    try {
      const store = await openStore();
      const release = proxy.holdBlobs(built.big.blobs.map((b) => b.digest));
      const started: Promise<void>[] = [];
      const pull = (text: string) => {
        let onStart = () => {};
        started.push(new Promise<void>((resolve) => (onStart = resolve)));
        return store.pull(ref(`${proxy.host}/${text}`), { onProgress: () => onStart() });
      };
      const pulls = [pull("big:big"), pull("big:big"), pull("library/busybox:busybox")];
      await Promise.all(started); // every pull is now waiting on its layers
      release();
      const [a, b, c] = await Promise.all(pulls);
      expect(a?.id).toBe(b?.id);
      expect(c?.layers[0]).toBe(a?.layers[0]);
      for (const blob of built.big.blobs ?? []) expect(proxy.blobGets(blob.digest)).toHaveLength(1);
    } finally {
      await proxy.close();
    }
  });

  it("never shares a layer's download with a pull from another registry (a hostile one cannot fail or stall it)", async () => {
    // The same layer (diff id and blob digest) from two registries: the first serves it tampered,
    // and holds it; a pull from the second must neither wait for it nor fail with it.
    const hostile = await RegistryProxy.start(registry.host);
    const honest = await RegistryProxy.start(registry.host);
    try {
      const store = await openStore();
      const layer = built.big.blobs[1]?.digest as string;
      hostile.tamperBlob(layer);
      const release = hostile.holdBlobs([layer]);
      const first = store.pull(ref(`${hostile.host}/big:big`));
      const firstFailure = storeFailure(first);
      while (hostile.blobGets(layer).length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      let started = () => {};
      const joined = new Promise<void>((resolve) => (started = resolve));
      const second = store.pull(ref(`${honest.host}/big:big`), { onProgress: () => started() });
      await joined; // its layers are under way (in a flight of their own, or in the hostile one's)
      release();
      expect((await second).layers).toEqual(built.big.diffIds);
      expect((await firstFailure).kind).toBe("digest-mismatch");
      expect(honest.blobGets(layer)).toHaveLength(1);
    } finally {
      await hostile.close();
      await honest.close();
    }
  });

  it("leaves a shared download running for the other pulls when one is aborted", async () => {
    const proxy = await RegistryProxy.start(registry.host);
    try {
      const store = await openStore();
      const release = proxy.holdBlobs(built.big.blobs.map((b) => b.digest));
      const controller = new AbortController();
      let startedA = () => {};
      let startedB = () => {};
      const a = store.pull(ref(`${proxy.host}/big:big`), {
        signal: controller.signal,
        onProgress: () => startedA(),
      });
      const b = store.pull(ref(`${proxy.host}/big:big`), { onProgress: () => startedB() });
      await Promise.all([new Promise<void>((r) => (startedA = r)), new Promise<void>((r) => (startedB = r))]);
      // The shared downloads are under way (held at the registry) when A gives up.
      while (built.big.blobs.some((b) => proxy.blobGets(b.digest).length === 0)) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      controller.abort(new Error("caller gave up"));
      await expect(a).rejects.toThrow("caller gave up");
      release();
      expect((await b).layers).toEqual(built.big.diffIds);
      for (const blob of built.big.blobs ?? []) expect(proxy.blobGets(blob.digest)).toHaveLength(1);
    } finally {
      await proxy.close();
    }
  });

  it("stops a pull that takes longer than the store allows one (timeout), and the next pull resumes", async () => {
    const proxy = await RegistryProxy.start(registry.host);
    try {
      const dir = mkdtempSync(join(work, "store-"));
      const store = await openStore({ dir, pullTimeoutMs: 1500 });
      const layer = built.big.blobs[1] as { digest: string; size: number };
      // The layer's first third comes at once, the rest never (the registry stalls).
      proxy.cutBlobOnce(layer.digest, Math.floor(layer.size / 3), { thenStall: true });
      const error = await storeFailure(store.pull(ref(`${proxy.host}/big:big`)));
      expect(error.kind).toBe("timeout");
      expect(error.message).toBe(
        `pulling ${proxy.host}/big:big took longer than the 1500 ms the image store allows one pull: stopped (pulling again resumes its downloads)`,
      );
      expect(await store.list()).toEqual([]);
      expect(readdirSync(join(dir, "tmp"))).toEqual([]);
      const kept = readdirSync(join(dir, "downloads")).filter((f) => f.startsWith(layer.digest.replace(":", "-")));
      expect(kept).toHaveLength(1);
      const image = await store.pull(ref(`${proxy.host}/big:big`));
      expect(image.layers).toEqual(built.big.diffIds);
      expect(proxy.blobGets(layer.digest).at(-1)?.range).toMatch(/^bytes=[1-9]\d*-$/);
    } finally {
      await proxy.close();
    }
  });

  it("follows a blob redirect to a CDN without sending it the Authorization header", async () => {
    const tokenRegistry = await startTestRegistry("token");
    const proxy = await RegistryProxy.start(tokenRegistry.host);
    const cdn = await TestCdn.start(tokenRegistry.storage);
    try {
      await tokenRegistry.push(layout, "busybox", "public/busybox");
      proxy.redirectBlobsTo(cdn.origin);
      const store = await openStore();
      const image = await store.pull(ref(`${proxy.host}/public/busybox:busybox`));
      expect(image.layers).toEqual(built.busybox.diffIds);
      expect(proxy.blobGets().every((r) => r.authorization && r.status === 307)).toBe(true);
      expect(cdn.requests.length).toBe(2); // the config and the layer
      expect(cdn.requests.every((r) => !r.authorization)).toBe(true);
    } finally {
      await cdn.close();
      await proxy.close();
      await tokenRegistry.close();
    }
  });

  it("refuses redirects and token realms on plain HTTP to a host neither loopback nor insecure (SSRF: a metadata service)", async () => {
    // 0.0.0.0 reaches this host, as 169.254.169.254 would reach a cloud's metadata service.
    const proxy = await RegistryProxy.start(registry.host);
    const cdn = await TestCdn.start(registry.storage);
    try {
      const elsewhere = cdn.origin.replace("127.0.0.1", "0.0.0.0");
      const store = await openStore();
      proxy.redirectBlobsTo(elsewhere);
      const redirected = await storeFailure(store.pull(ref(`${proxy.host}/library/busybox:busybox`)));
      expect(redirected.kind).toBe("connection");
      expect(redirected.message).toBe(
        `registry ${proxy.host} redirected to plain HTTP (${elsewhere}), which the store speaks only to loopback hosts and insecure registries: refused`,
      );
      proxy.redirectBlobsTo(undefined);
      proxy.answer("/v2/library/busybox/manifests/busybox", {
        status: 401,
        headers: { "www-authenticate": `Bearer realm="${elsewhere}/token",service="sbx"` },
        body: "",
      });
      const realm = await storeFailure(store.pull(ref(`${proxy.host}/library/busybox:busybox`)));
      expect(realm.kind).toBe("authentication");
      expect(realm.message).toBe(
        `registry ${proxy.host} names a token realm on plain HTTP (${elsewhere}), which the store speaks only to loopback hosts and insecure registries: refused`,
      );
      expect(cdn.requests).toEqual([]);
    } finally {
      await cdn.close();
      await proxy.close();
    }
  });

  it("refuses redirects and token realms to this host from a registry that is not on it (SSRF: local services)", async () => {
    const proxy = await RegistryProxy.start(registry.host);
    const cdn = await TestCdn.start(registry.storage);
    try {
      // The registry as a host that is not loopback (spoken to over HTTP because it is listed insecure).
      const remote = proxy.host.replace("127.0.0.1", "0.0.0.0");
      const store = await openStore({ insecureRegistries: [remote] });
      proxy.redirectBlobsTo(cdn.origin);
      const redirected = await storeFailure(store.pull(ref(`${remote}/library/busybox:busybox`)));
      expect(redirected.kind).toBe("connection");
      expect(redirected.message).toBe(
        `registry ${remote} redirected to this host (${cdn.origin}), which only a registry on loopback may name: refused`,
      );
      proxy.redirectBlobsTo(undefined);
      proxy.answer("/v2/library/busybox/manifests/busybox", {
        status: 401,
        headers: { "www-authenticate": `Bearer realm="${cdn.origin}/token",service="sbx"` },
        body: "",
      });
      const realm = await storeFailure(store.pull(ref(`${remote}/library/busybox:busybox`)));
      expect(realm.kind).toBe("authentication");
      expect(realm.message).toBe(
        `registry ${remote} names a token realm on this host (${cdn.origin}), which only a registry on loopback may name: refused`,
      );
      expect(cdn.requests).toEqual([]);
      // Its own address is fine: the same pull without the redirect or the challenge works.
      proxy.answer("/v2/library/busybox/manifests/busybox", undefined);
      expect((await store.pull(ref(`${remote}/library/busybox:busybox`))).layers).toEqual(built.busybox.diffIds);
    } finally {
      await cdn.close();
      await proxy.close();
    }
  });

  it("names a registry that refuses more pulls (429) with a quota error", async () => {
    const proxy = await RegistryProxy.start(registry.host);
    try {
      proxy.answer("/v2/library/busybox/manifests/busybox", {
        status: 429,
        headers: { "content-type": "application/json", "retry-after": "60" },
        body: JSON.stringify({
          errors: [{ code: "TOOMANYREQUESTS", message: "You have reached your pull rate limit." }],
        }),
      });
      const store = await openStore();
      const error = await storeFailure(store.pull(ref(`${proxy.host}/library/busybox:busybox`)));
      expect(error.kind).toBe("quota");
      expect(error.message).toContain(`registry ${proxy.host} refuses more pulls for now (HTTP 429: TOOMANYREQUESTS`);
      expect(error.message).toContain("retry after 60 s");
    } finally {
      await proxy.close();
    }
  });

  it("refuses a Docker schema 1 manifest as unsupported", async () => {
    const proxy = await RegistryProxy.start(registry.host);
    try {
      proxy.answer("/v2/library/old/manifests/1", {
        status: 200,
        headers: { "content-type": "application/vnd.docker.distribution.manifest.v1+prettyjws" },
        body: JSON.stringify({ schemaVersion: 1, name: "library/old", tag: "1", fsLayers: [], history: [] }),
      });
      const store = await openStore();
      const error = await storeFailure(store.pull(ref(`${proxy.host}/library/old:1`)));
      expect(error.kind).toBe("unsupported");
      expect(error.message).toContain("schema 1");
    } finally {
      await proxy.close();
    }
  });

  it("answers connection naming a registry nobody listens on", async () => {
    const store = await openStore();
    const error = await storeFailure(store.pull(ref("127.0.0.1:9/library/busybox:1")));
    expect(error.kind).toBe("connection");
    expect(error.message).toContain("could not reach registry 127.0.0.1:9");
  });

  it("keeps images across a new store instance on the same dir", async () => {
    const dir = mkdtempSync(join(work, "persist-"));
    const first = await OciImageStore.open({ dir });
    const image = await first.pull(ref(`${registry.host}/team/app:app`));
    first.close();
    const second = await OciImageStore.open({ dir });
    keep(second);
    expect(await second.list()).toEqual([image]);
    expect(await second.get(`${registry.host}/team/app:app`)).toEqual(image);
    for (const layer of image.layers) expect(readdirSync(second.layerDir(layer)).length).toBeGreaterThan(0);
    expect(lstatSync(dir).mode & 0o777).toBe(0o700);
  });
});

describe.runIf(available)("pulls from registries that want credentials", () => {
  let work: string;
  let layout: string;
  let basic: TestRegistry;
  let token: TestRegistry;
  const { openStore, closeStores } = testStores(() => work);
  const good = { username: TEST_USER, password: TEST_PASSWORD };
  const wrong = { username: TEST_USER, password: "not-it" };

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "sbx-auth-"));
    layout = join(work, "layout");
    await writeOciImage(layout, "busybox", { layers: [busyboxLayer()] });
    [basic, token] = await Promise.all([startTestRegistry("basic"), startTestRegistry("token")]);
    await basic.push(layout, "busybox", "private/busybox");
    await token.push(layout, "busybox", "private/busybox");
    await token.push(layout, "busybox", "public/busybox");
  });
  afterEach(closeStores);
  afterAll(async () => {
    await basic?.close();
    await token?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it("basic auth: good credentials pull; wrong or missing ones are refused naming the registry", async () => {
    const store = await openStore();
    const name = ref(`${basic.host}/private/busybox:busybox`);
    expect((await store.pull(name, { credentials: good })).refs).toEqual([`${basic.host}/private/busybox:busybox`]);
    const other = await openStore();
    const refused = await storeFailure(other.pull(name, { credentials: wrong }));
    expect(refused.kind).toBe("authentication");
    expect(refused.message).toContain(`registry ${basic.host} refused the credentials`);
    expect(refused.message).not.toContain("not-it");
    const missing = await storeFailure(other.pull(name));
    expect(missing.kind).toBe("authentication");
    expect(missing.message).toContain(`registry ${basic.host} wants credentials for private/busybox`);
  });

  it("bearer tokens: a token that expires mid-pull is renewed and the request asked again", async () => {
    const proxy = await RegistryProxy.start(token.host);
    try {
      const challenge = (await fetch(`http://${token.host}/v2/`)).headers.get("www-authenticate") as string;
      proxy.expireTokenOnce(`${challenge},scope="repository:private/busybox:pull"`);
      const store = await openStore();
      const image = await store.pull(ref(`${proxy.host}/private/busybox:busybox`), { credentials: good });
      expect(image.layers).toHaveLength(1);
      const blobs = proxy.blobGets();
      expect(blobs.map((r) => r.status)).toContain(401);
      expect(blobs.filter((r) => r.status === 200)).toHaveLength(2); // the config and the layer
    } finally {
      await proxy.close();
    }
  });

  it("bearer tokens: anonymous for a public image, credentials for a private one", async () => {
    const store = await openStore();
    expect((await store.pull(ref(`${token.host}/public/busybox:busybox`))).layers).toHaveLength(1);
    const name = ref(`${token.host}/private/busybox:busybox`);
    const anonymous = await storeFailure(store.pull(name));
    expect(anonymous.kind).toBe("authentication");
    expect(anonymous.message).toContain(`registry ${token.host}`);
    const refused = await storeFailure(store.pull(name, { credentials: wrong }));
    expect(refused.kind).toBe("authentication");
    expect(refused.message).toContain(`registry ${token.host} refused the credentials for private/busybox`);
    expect((await store.pull(name, { credentials: good })).refs).toEqual([
      `${token.host}/private/busybox:busybox`,
      `${token.host}/public/busybox:busybox`,
    ]);
  });
});
