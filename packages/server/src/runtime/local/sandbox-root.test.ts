// What a sandbox's root is made of: an image's layers each once, top first, under the
// mount-point layer; and which images the local runtime refuses (the typed unsupported error
// comes from the engine, with this sentence).
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ImageRecord } from "@sbx/server-kit";
import { afterAll, describe, expect, it } from "vitest";
import { collapseLayers } from "./root-mount.js";
import {
  hostArchitecture,
  imageRoot,
  imageRootProblem,
  type LayerSource,
  layerStamp,
  MAX_IMAGE_LAYERS,
} from "./sandbox-root.js";

const digest = (n: number) => `sha256:${n.toString(16).padStart(64, "0")}`;

describe("sandbox roots", () => {
  const dir = mkdtempSync(join(tmpdir(), "sbx-roots-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const layers: LayerSource = {
    layerDir: (diffId) => join(dir, diffId.replace(":", "-")),
    layerToken: (diffId) => `token of ${diffId}`,
    layerIdBase: 1_900_000_000,
  };
  const image = (over: Partial<ImageRecord> = {}): ImageRecord => ({
    id: `im-${"a".repeat(20)}`,
    refs: [],
    digest: digest(99),
    sizeBytes: 1,
    createdAtMs: 0,
    platform: { os: "linux", architecture: hostArchitecture() },
    config: { env: [] },
    layers: [digest(1), digest(2)],
    ...over,
  });
  for (const n of [1, 2, 3]) mkdirSync(layers.layerDir(digest(n)));

  it("collapses a layer listed again: kept only where it is highest", () => {
    expect(collapseLayers(["a", "b", "a", "c", "b"])).toEqual(["b", "c", "a"]);
    expect(collapseLayers(["a"])).toEqual(["a"]);
    const root = imageRoot(
      image({ layers: [digest(1), digest(2), digest(1)] }),
      layers,
      { path: "/mp", resolvConf: "/usr/etc/resolv.conf" },
      "/empty",
    );
    expect(root.lowers).toEqual([
      { path: "/mp", idmapped: true },
      { path: layers.layerDir(digest(1)), idmapped: true },
      { path: layers.layerDir(digest(2)), idmapped: true },
    ]);
    expect(root.hostUsr).toBe(false);
    expect(root.diskContents).toBe("/empty");
    expect(root.resolvConf).toBe("/usr/etc/resolv.conf");
  });

  it("starts images of this machine's platform whose layers are all in the store, and says why not otherwise", () => {
    expect(imageRootProblem(image(), layers)).toBeUndefined();
    expect(imageRootProblem(image(), undefined)).toMatch(/no image store/);
    const other = hostArchitecture() === "amd64" ? "arm64" : "amd64";
    expect(imageRootProblem(image({ platform: { os: "linux", architecture: other } }), layers)).toMatch(
      new RegExp(`is for linux/${other}: this machine runs linux/${hostArchitecture()} images only`),
    );
    expect(imageRootProblem(image({ platform: { os: "windows", architecture: hostArchitecture() } }), layers)).toMatch(
      /is for windows/,
    );
    expect(imageRootProblem(image({ layers: [digest(1), digest(4)] }), layers)).toMatch(
      /layer sha256:0+4 of image im-a+ is not in the image store/,
    );
    expect(
      imageRootProblem(image({ layers: ["../../etc"] }), {
        ...layers,
        layerDir: () => {
          throw new Error("not a diff id");
        },
      }),
    ).toMatch(/malformed layer/);
    const tooMany = Array.from({ length: MAX_IMAGE_LAYERS + 1 }, (_, i) => digest(1000 + i));
    expect(imageRootProblem(image({ layers: tooMany }), layers)).toMatch(/overlayfs stacks at most 499/);
  });

  it("stamps an image's layers with the store's tokens: a layer unpacked again differs, whatever its dir's inode", () => {
    // The store removed layer 2 and unpacked it again: its dir is the same path and, as the
    // file system may well give it, the same inode number; only its token tells them apart.
    let generation = 1;
    const store: LayerSource = {
      ...layers,
      layerToken: (diffId) => (diffId === digest(2) ? `unpacked ${generation}` : layers.layerToken(diffId)),
    };
    const before = layerStamp(image(), store);
    expect(layerStamp(image(), store)).toBe(before);
    generation = 2;
    expect(layerStamp(image(), store)).not.toBe(before);
    // A layer missing: no stamp (a warm sandbox started so is never intact), not "" (which an
    // image without layers has).
    expect(layerStamp(image(), { ...store, layerToken: () => undefined })).toBeUndefined();
  });
});
