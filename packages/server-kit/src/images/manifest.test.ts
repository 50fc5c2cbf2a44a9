/** Image documents and platform choice: what is refused, and how an index entry is chosen. */
import { describe, expect, it } from "vitest";
import type { ImageStoreError } from "../engine/image-store.js";
import { parseConfig, parseManifestOrIndex } from "./manifest.js";
import { choosePlatform } from "./platform.js";

const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const digest = (c: string) => `sha256:${c.repeat(64)}`;
const kindOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    return (error as ImageStoreError).kind;
  }
  return "ok";
};

describe("image documents", () => {
  it("refuses schema 1, unknown media types, artifacts, foreign layers and malformed JSON", () => {
    expect(kindOf(() => parseManifestOrIndex(json({ schemaVersion: 1, fsLayers: [] }), "m"))).toBe("unsupported");
    expect(kindOf(() => parseManifestOrIndex(json({ schemaVersion: 2, mediaType: "text/plain" }), "m"))).toBe(
      "unsupported",
    );
    const manifest = (config: string, layer: string) =>
      json({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: config, digest: digest("a"), size: 2 },
        layers: [{ mediaType: layer, digest: digest("b"), size: 3 }],
      });
    expect(kindOf(() => parseManifestOrIndex(manifest("application/vnd.cncf.helm.config.v1+json", "x"), "m"))).toBe(
      "unsupported",
    );
    expect(
      kindOf(() =>
        parseManifestOrIndex(
          manifest(
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
          ),
          "m",
        ),
      ),
    ).toBe("unsupported");
    expect(kindOf(() => parseManifestOrIndex(Buffer.from("{not json"), "m"))).toBe("invalid");
    expect(kindOf(() => parseManifestOrIndex(Buffer.from([0xff, 0xfe]), "m"))).toBe("invalid");
    const bad = json({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: "sha256:zz", size: 2 },
      layers: [],
    });
    expect(kindOf(() => parseManifestOrIndex(bad, "m"))).toBe("invalid");
    const ok = manifest("application/vnd.oci.image.config.v1+json", "application/vnd.oci.image.layer.v1.tar+zstd");
    expect(parseManifestOrIndex(ok, "m").kind).toBe("manifest");
  });

  it("tells an OCI index from a manifest by its shape when it names no media type", () => {
    const index = json({ schemaVersion: 2, manifests: [] });
    expect(parseManifestOrIndex(index, "i").kind).toBe("index");
  });

  it("reads a config's platform, process settings and diff ids", () => {
    const config = parseConfig(
      json({
        os: "linux",
        architecture: "arm64",
        variant: "v8",
        config: { Env: ["A=1"], User: "1000:1000", WorkingDir: "/app", Cmd: ["run"], Entrypoint: null },
        rootfs: { type: "layers", diff_ids: [digest("c")] },
      }),
      "c",
    );
    expect(config).toEqual({
      platform: { os: "linux", architecture: "arm64", variant: "v8" },
      config: { env: ["A=1"], user: "1000:1000", workingDir: "/app", cmd: ["run"], entrypoint: undefined },
      diffIds: [digest("c")],
    });
    expect(kindOf(() => parseConfig(json({ os: "linux", architecture: "amd64" }), "c"))).toBe("invalid");
  });

  it("refuses an image of more layers than an overlay mount stacks (500), before any is fetched", () => {
    // A 4 MB manifest lists ~25,000 layers: each a download, an unpack and a directory.
    const config = (layers: number) =>
      json({
        os: "linux",
        architecture: "amd64",
        rootfs: { type: "layers", diff_ids: Array(layers).fill(digest("d")) },
      });
    expect(parseConfig(config(500), "c").diffIds).toHaveLength(500);
    let error: ImageStoreError | undefined;
    try {
      parseConfig(config(501), "the config x");
    } catch (e) {
      error = e as ImageStoreError;
    }
    expect(error?.kind).toBe("unsupported");
    expect(error?.message).toBe(
      "the config x lists 501 layers; the store takes images of up to 500 (the layers an overlay mount stacks)",
    );
  });

  it("chooses the host's platform from an index: its variant first, then none; never an attestation", () => {
    const entry = (architecture: string, variant?: string, os = "linux") => ({
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: digest(architecture === "arm64" ? (variant === undefined ? "1" : variant === "v8" ? "2" : "3") : "4"),
      size: 1,
      platform: { os, architecture, variant },
    });
    const arm64 = { os: "linux", architecture: "arm64", variant: "v8" };
    expect(choosePlatform([entry("arm64"), entry("arm64", "v8")], arm64)?.digest).toBe(digest("2"));
    expect(choosePlatform([entry("arm64")], arm64)?.digest).toBe(digest("1"));
    expect(choosePlatform([entry("arm64", "v9")], arm64)).toBeUndefined();
    const amd64 = { os: "linux", architecture: "amd64" };
    expect(choosePlatform([entry("amd64", undefined, "windows"), entry("unknown", undefined, "unknown")], amd64)).toBe(
      undefined,
    );
  });
});
