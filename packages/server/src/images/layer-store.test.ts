/**
 * The layer store with its worker threads: a layer becomes visible only after both its
 * digests checked out, and every way a layer job can end early (a digest that fails only at
 * the blob's last byte, a source that breaks off or waits for ever, a worker that stops)
 * leaves nothing in the store.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { digestOf } from "./digest.js";
import { LayerStore } from "./layer-store.js";
import { ImageStoreError } from "./store-errors.js";
import { imageStoreAvailable } from "./test-support/available.js";
import { chunksOf, gzipOf, manyFilesTar, tarOf } from "./test-support/tar-layers.js";

const ID_BASE = 1_900_000_000;
const available = await imageStoreAvailable("layer store tests");

describe.runIf(available)("layer store", () => {
  let work: string;
  let count = 0;
  const stores: LayerStore[] = [];
  let tar: Buffer;
  let diffId: string;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "sbx-layers-"));
    tar = await tarOf([
      { name: "etc/", type: "directory" },
      { name: "etc/hostname", content: "sbx\n" },
      { name: "data.bin", content: randomBytes(3 << 20) },
    ]);
    diffId = digestOf(tar);
  });
  afterEach(() => {
    for (const store of stores.splice(0)) store.close();
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  function open(workers = 2, workerHeapMiB?: number, under = work) {
    const dir = join(under, `store-${count++}`);
    mkdirSync(join(dir, "tmp"), { recursive: true });
    const store = new LayerStore(join(dir, "layers"), join(dir, "tmp"), ID_BASE, workers, workerHeapMiB);
    stores.push(store);
    return { store, layers: join(dir, "layers"), tmp: join(dir, "tmp") };
  }

  /**
   * A layer source that sends the first half of `blob`, then waits until `release` (the layer's
   * `stop`, say); `started` resolves once a worker unpacks some of it (`unpacking` given as the
   * layer's onUnpackedBytes).
   */
  function halfThenHeld(blob: Buffer) {
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let unpacking!: () => void;
    const started = new Promise<void>((resolve) => {
      unpacking = resolve;
    });
    async function* source() {
      yield* chunksOf(blob.subarray(0, blob.length >> 1));
      await held;
    }
    return { source, release, unpacking, started };
  }

  async function failure(promise: Promise<unknown>): Promise<unknown> {
    try {
      await promise;
    } catch (error) {
      return error;
    }
    throw new Error("expected the layer to be refused");
  }

  it("unpacks a layer in a worker and renames it into place once both digests checked out", async () => {
    const { store, layers, tmp } = open();
    const blob = gzipOf(tar);
    const sizes: number[] = [];
    const { sizeBytes } = await store.add({
      diffId,
      open: () => ({ source: chunksOf(blob) }),
      blob: { digest: digestOf(blob), size: blob.length },
      maxBytes: 1 << 30,
      what: "layer 1 of test",
      onUnpackedBytes: (n) => sizes.push(n),
    });
    expect(sizeBytes).toBe(4 + (3 << 20));
    expect(sizes.at(-1)).toBe(tar.length);
    expect(readFileSync(join(store.dir(diffId), "etc/hostname"), "utf8")).toBe("sbx\n");
    expect(lstatSync(join(store.dir(diffId), "etc/hostname")).uid).toBe(ID_BASE);
    expect(readdirSync(layers)).toEqual([diffId.replace(":", "-")]);
    expect(readdirSync(tmp)).toEqual([]);
  });

  it("refuses a blob whose digest fails only at its last byte, after the whole layer unpacked: nothing is kept", async () => {
    const { store, layers, tmp } = open();
    // gzip ignores what follows its stream: the layer unpacks whole, and only the blob's own
    // digest, checked at its end, can tell that its last byte is not the one it should be.
    const blob = Buffer.concat([gzipOf(tar), Buffer.alloc(4096)]);
    const tampered = Buffer.from(blob);
    tampered[tampered.length - 1] = 1;
    const sizes: number[] = [];
    const error = await failure(
      store.add({
        diffId,
        open: () => ({ source: chunksOf(tampered) }),
        blob: { digest: digestOf(blob), size: blob.length },
        maxBytes: 1 << 30,
        what: "layer 1 of test",
        onUnpackedBytes: (n) => sizes.push(n),
      }),
    );
    expect(error).toBeInstanceOf(ImageStoreError);
    expect((error as ImageStoreError).kind).toBe("digest-mismatch");
    expect((error as ImageStoreError).message).toContain(
      `the blob ${digestOf(blob)} of layer 1 of test does not match`,
    );
    expect(sizes.at(-1)).toBeGreaterThan(3 << 20); // its files had been unpacked (the end of the tar is padding)
    expect(readdirSync(layers)).toEqual([]);
    expect(readdirSync(tmp)).toEqual([]);
  });

  it("refuses a layer that is not its diff id, nothing kept", async () => {
    const { store, layers, tmp } = open();
    const blob = gzipOf(tar);
    const other = `sha256:${"0".repeat(64)}`;
    const error = await failure(
      store.add({
        diffId: other,
        open: () => ({ source: chunksOf(blob) }),
        blob: { digest: digestOf(blob), size: blob.length },
        maxBytes: 1 << 30,
        what: "layer 1 of test",
      }),
    );
    expect((error as ImageStoreError).kind).toBe("digest-mismatch");
    expect((error as ImageStoreError).message).toContain("the uncompressed layer 1 of test does not match");
    expect(readdirSync(layers)).toEqual([]);
    expect(readdirSync(tmp)).toEqual([]);
  });

  it("fails with the source's own error when the download breaks off mid-layer, nothing kept", async () => {
    const { store, layers, tmp } = open();
    const blob = gzipOf(tar);
    const broken = new ImageStoreError("connection", "could not reach registry r.test: the connection was reset");
    async function* source() {
      yield* chunksOf(blob.subarray(0, blob.length >> 1));
      throw broken;
    }
    const error = await failure(
      store.add({
        diffId,
        open: () => ({ source: source() }),
        blob: { digest: digestOf(blob), size: blob.length },
        maxBytes: 1 << 30,
        what: "layer 1 of test",
      }),
    );
    expect(error).toBe(broken);
    expect(readdirSync(layers)).toEqual([]);
    expect(readdirSync(tmp)).toEqual([]);
  });

  it("stops a download that waits for bytes when the layer failed first (past the size limit), and closes it", async () => {
    const { store, layers, tmp } = open();
    const bomb = await tarOf([{ name: "zeros", content: Buffer.alloc(4 << 20) }]);
    const blob = gzipOf(bomb);
    let stopSource!: () => void;
    const stop = new Promise<void>((resolve) => {
      stopSource = resolve;
    });
    let stopped = false;
    let closed = false;
    async function* source() {
      try {
        yield blob.subarray(0, blob.length - 1);
        await stop; // a registry that sends its last byte only when the read is ended
      } finally {
        closed = true;
      }
    }
    const error = await failure(
      store.add({
        diffId: digestOf(bomb),
        open: () => ({
          source: source(),
          stop: () => {
            stopped = true;
            stopSource();
          },
        }),
        blob: { digest: digestOf(blob), size: blob.length },
        maxBytes: 1 << 20,
        what: "layer 1 of test",
      }),
    );
    expect((error as ImageStoreError).kind).toBe("quota");
    expect((error as ImageStoreError).message).toBe(
      `layer 1 of test unpacks to more than ${1 << 20} bytes, the store's limit for one layer`,
    );
    expect([stopped, closed]).toEqual([true, true]);
    expect(readdirSync(layers)).toEqual([]);
    expect(readdirSync(tmp)).toEqual([]);
  });

  it("fails a layer whose worker stops mid-layer, and removes what it had unpacked", async () => {
    const { store, layers, tmp } = open();
    const blob = gzipOf(tar);
    const { source, release, unpacking, started } = halfThenHeld(blob);
    const adding = failure(
      store.add({
        diffId,
        open: () => ({ source: source(), stop: () => release() }),
        blob: { digest: digestOf(blob), size: blob.length },
        maxBytes: 1 << 30,
        what: "layer 1 of test",
        onUnpackedBytes: () => unpacking(),
      }),
    );
    await started;
    store.close(); // stops the workers, this job's among them
    const error = await adding;
    expect(String(error)).toMatch(/a layer worker stopped/);
    expect(readdirSync(layers)).toEqual([]);
    expect(readdirSync(tmp)).toEqual([]);
  });

  it("fails only the layer that takes its worker past its heap limit: a layer that shared the worker is run again alone, and kept", async () => {
    const heapMiB = 16;
    // On a tmpfs: the layer that blows the heap makes tens of thousands of files first.
    const mount = mkdtempSync(join(work, "tmpfs-"));
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=256m,mode=0700", "tmpfs", mount]);
    const { store, layers, tmp } = open(1, heapMiB, mount);
    onTestFinished(() => {
      store.close();
      execFileSync("umount", [mount]);
    });
    const blob = gzipOf(tar);
    // A layer whose record of its files needs more heap than a worker has (16 MiB here).
    const many = manyFilesTar(100_000);
    const manyBlob = gzipOf(many);
    // Its first run is still in the worker when the other layer gets there.
    const { source: halfThenWait, release, unpacking, started } = halfThenHeld(blob);
    let opened = 0;
    const kept = store.add({
      diffId,
      open: () => (opened++ === 0 ? { source: halfThenWait(), stop: () => release() } : { source: chunksOf(blob) }),
      blob: { digest: digestOf(blob), size: blob.length },
      maxBytes: 1 << 30,
      what: "layer 1 of kept",
      onUnpackedBytes: () => unpacking(),
    });
    await started;
    const error = await failure(
      store.add({
        diffId: digestOf(many),
        open: () => ({ source: chunksOf(manyBlob) }),
        blob: { digest: digestOf(manyBlob), size: manyBlob.length },
        maxBytes: 1 << 30,
        what: "layer 1 of many",
      }),
    );
    expect(error).toBeInstanceOf(ImageStoreError);
    expect((error as ImageStoreError).kind).toBe("quota");
    expect((error as ImageStoreError).message).toBe(
      `layer 1 of many needs more memory to unpack than the ${heapMiB} MiB a layer worker may have`,
    );
    expect(await kept).toEqual({ sizeBytes: 4 + (3 << 20) });
    expect(opened).toBe(2); // its first run was stopped with the worker, then it ran alone
    expect(readdirSync(layers)).toEqual([diffId.replace(":", "-")]);
    expect(readdirSync(tmp)).toEqual([]);
    // A new worker takes the next layers.
    const small = await tarOf([{ name: "hello", content: "hi\n" }]);
    const smallBlob = gzipOf(small);
    await store.add({
      diffId: digestOf(small),
      open: () => ({ source: chunksOf(smallBlob) }),
      blob: { digest: digestOf(smallBlob), size: smallBlob.length },
      maxBytes: 1 << 30,
      what: "layer 1 of small",
    });
    expect(readFileSync(join(store.dir(digestOf(small)), "hello"), "utf8")).toBe("hi\n");
  }, 120_000);
});
