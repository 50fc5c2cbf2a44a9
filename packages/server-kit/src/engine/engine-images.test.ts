import { Code, ConnectError } from "@connectrpc/connect";
import { ImageErrorKind, type ImageReference, parseImageReference } from "@sbx/proto";
import { describe, expect, it } from "vitest";
import { DEFAULT_IMAGE, imageEnv, processEnv } from "./default-image.js";
import { EngineImages } from "./engine-images.js";
import { imageStoreFailure } from "./image-errors.js";
import {
  type ImageRecord,
  type ImageStore,
  ImageStoreError,
  type ImageStoreErrorKind,
  type PullOptions,
} from "./image-store.js";
import { pullEvents } from "./services/image-service.js";

const image = (id: string, refs: string[], config: Partial<ImageRecord["config"]> = {}): ImageRecord => ({
  id,
  refs,
  digest: `sha256:${id.slice(3).padEnd(64, "0")}`,
  sizeBytes: 10,
  createdAtMs: 1,
  platform: { os: "linux", architecture: "amd64" },
  config: { env: [], ...config },
  layers: ["sha256:layer"],
});

/** A store holding what the test pulls, and failing the way it is told. */
class ListStore implements ImageStore {
  readonly images: ImageRecord[] = [];
  readonly pulls: string[] = [];
  failWith: ImageStoreError | Error | undefined;
  async pull(ref: ImageReference, options?: PullOptions): Promise<ImageRecord> {
    this.pulls.push(`${ref.registry}/${ref.repository}:${ref.tag}`);
    if (this.failWith) throw this.failWith;
    options?.onProgress?.({ bytesDone: 5, bytesTotal: 10 });
    const pulled = image(`im-${"a".repeat(20)}`, [`${ref.registry}/${ref.repository}:${ref.tag}`]);
    this.images.push(pulled);
    return pulled;
  }
  async importArchive(): Promise<ImageRecord> {
    throw new ImageStoreError("invalid", "not an archive");
  }
  async list() {
    return this.images;
  }
  async get(idOrRef: string) {
    return this.images.find((i) => i.id === idOrRef || i.digest === idOrRef || i.refs.includes(idOrRef));
  }
  async delete(id: string) {
    this.images.splice(
      this.images.findIndex((i) => i.id === id),
      1,
    );
  }
}

const codeOf = async (work: Promise<unknown>) => {
  try {
    await work;
  } catch (error) {
    return ConnectError.from(error).code;
  }
  return "ok";
};

describe("EngineImages", () => {
  it("without a store: the default image alone, and whatever needs a store is UNIMPLEMENTED", async () => {
    const images = new EngineImages(DEFAULT_IMAGE, undefined);
    expect((await images.list()).map((i) => i.id)).toEqual(["im-default"]);
    expect(await images.resolve("")).toBe(DEFAULT_IMAGE);
    expect(await images.resolve("im-default")).toBe(DEFAULT_IMAGE);
    expect(await codeOf(images.resolve(`im-${"0".repeat(20)}`))).toBe(Code.NotFound);
    expect(await codeOf(images.resolve("python:3.12"))).toBe(Code.Unimplemented);
    expect(await codeOf(images.resolve("Python"))).toBe(Code.InvalidArgument);
    expect(await codeOf(images.pull(parseImageReference("python")))).toBe(Code.Unimplemented);
    expect(await codeOf(images.importArchive((async function* () {})()))).toBe(Code.Unimplemented);
    expect(await codeOf(images.delete("im-default", () => undefined))).toBe(Code.FailedPrecondition);
    expect(await codeOf(images.delete(`im-${"0".repeat(20)}`, () => undefined))).toBe(Code.NotFound);
  });

  it("a create's reference: the image kept under it (any spelling), else pulled once", async () => {
    const store = new ListStore();
    const images = new EngineImages(DEFAULT_IMAGE, store);
    const first = await images.resolve("python:3.12");
    expect(store.pulls).toEqual(["docker.io/library/python:3.12"]);
    expect(await images.resolve("docker.io/library/python:3.12")).toBe(first);
    expect(await images.resolve("index.docker.io/library/python:3.12")).toBe(first);
    expect(await images.resolve(first.id)).toBe(first);
    expect(await images.resolve(first.digest)).toBe(first);
    expect(store.pulls).toHaveLength(1);
    expect((await images.list()).map((i) => i.id)).toEqual(["im-default", first.id]);
  });

  it("refuses to delete an image a running sandbox uses, naming the sandbox", async () => {
    const store = new ListStore();
    const images = new EngineImages(DEFAULT_IMAGE, store);
    const pulled = await images.resolve("python:3.12");
    const error = await images.delete(pulled.id, () => "sb-user").catch((e: unknown) => ConnectError.from(e));
    expect(error?.code).toBe(Code.FailedPrecondition);
    expect(error?.message).toContain("sb-user");
    // The driver lets go of what it keeps of the image (warm sandboxes) before the store deletes it.
    const order: string[] = [];
    await images.delete(
      pulled.id,
      () => undefined,
      async (id) => {
        order.push(`release ${id}`, (await images.find(id)) ? "still there" : "gone");
      },
    );
    expect(order).toEqual([`release ${pulled.id}`, "still there"]);
    expect(await images.find(pulled.id)).toBeUndefined();
  });

  it("a store's failure reaches the client with its code, the ImageError detail and the registry pulled from", async () => {
    const store = new ListStore();
    const images = new EngineImages(DEFAULT_IMAGE, store);
    store.failWith = new ImageStoreError("authentication", "registry ghcr.io refused the credentials for org/app");
    const failure = (work: Promise<unknown>) =>
      work.then(
        () => undefined,
        (e: unknown) => e as ConnectError,
      );
    const error = await failure(images.pull(parseImageReference("ghcr.io/org/app:1")));
    expect(error?.code).toBe(Code.PermissionDenied);
    expect(error?.rawMessage).toBe("registry ghcr.io refused the credentials for org/app");
    const [detail] = error?.details ?? [];
    expect(detail).toMatchObject({
      value: { kind: ImageErrorKind.AUTHENTICATION, registry: "ghcr.io", reference: "ghcr.io/org/app:1" },
    });
    store.failWith = new Error("disk exploded");
    const other = await failure(images.pull(parseImageReference("ghcr.io/org/app:1")));
    expect(other?.code).toBe(Code.Internal);
    expect(other?.rawMessage).toBe("pulling ghcr.io/org/app:1 failed: disk exploded");
  });
});

describe("imageStoreFailure", () => {
  it("maps every store error kind to one code (a registry's refusal is never UNAUTHENTICATED)", () => {
    const table: [ImageStoreErrorKind, Code][] = [
      ["not-found", Code.NotFound],
      ["authentication", Code.PermissionDenied],
      ["connection", Code.Unavailable],
      ["digest-mismatch", Code.DataLoss],
      ["invalid", Code.InvalidArgument],
      ["unsupported", Code.Unimplemented],
      ["quota", Code.ResourceExhausted],
      ["in-use", Code.FailedPrecondition],
      ["timeout", Code.DeadlineExceeded],
    ];
    for (const [kind, code] of table) {
      expect(imageStoreFailure(new ImageStoreError(kind, "m"), {}, "x").code, kind).toBe(code);
    }
  });
});

describe("images and processes' environments", () => {
  it("an image's Env under the sandbox's and the call's; Docker's PATH and HOME when it sets none", () => {
    const python = image(`im-${"b".repeat(20)}`, [], {
      env: ["PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8", "A=1=2"],
    });
    expect(processEnv(false, { B: "sandbox" }, { C: "call" }, python)).toEqual({
      PATH: "/usr/local/bin:/usr/bin",
      HOME: "/root",
      LANG: "C.UTF-8",
      A: "1=2",
      B: "sandbox",
      C: "call",
    });
    expect(imageEnv(image("im-x", [], { user: "1000:1000" })).HOME).toBe("/");
    expect(imageEnv(image("im-x", [], { user: "root:wheel" })).HOME).toBe("/root");
    expect(imageEnv(image("im-x", [])).PATH).toBe("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    // Without an image: the default image's, as before.
    expect(processEnv(true, {}, {})).toMatchObject({ HOME: "/root", LANG: "C.UTF-8", TERM: "xterm-256color" });
  });
});

describe("pullEvents", () => {
  it("sends progress as the client takes it, folding reports made meanwhile, then the image", async () => {
    let report: (p: { bytesDone: number; bytesTotal: number }) => void = () => {};
    let finish: (image: ImageRecord) => void = () => {};
    const events = pullEvents(
      (onProgress) => {
        report = onProgress;
        return new Promise((resolve) => {
          finish = resolve;
        });
      },
      () => false,
    );
    const first = events.next();
    report({ bytesDone: 1, bytesTotal: 100 });
    expect((await first).value).toMatchObject({
      event: { case: "progress", value: { bytesDone: 1n, bytesTotal: 100n } },
    });
    // Three reports before the client asks again: it gets the latest only.
    report({ bytesDone: 2, bytesTotal: 100 });
    report({ bytesDone: 50, bytesTotal: 100 });
    report({ bytesDone: 100, bytesTotal: 100 });
    expect((await events.next()).value).toMatchObject({ event: { case: "progress", value: { bytesDone: 100n } } });
    const last = events.next();
    finish(image(`im-${"c".repeat(20)}`, ["docker.io/library/x:1"]));
    expect((await last).value).toMatchObject({ event: { case: "image", value: { id: `im-${"c".repeat(20)}` } } });
    expect((await events.next()).done).toBe(true);
  });

  it("ends with the pull's failure", async () => {
    const events = pullEvents(
      () => Promise.reject(new ConnectError("gone", Code.NotFound)),
      () => false,
    );
    await expect(events.next()).rejects.toThrow(/gone/);
  });
});
