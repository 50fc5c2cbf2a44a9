/**
 * Test support: where the conformance suite's image cases get their test images when the
 * target is a real server ({@link TestImageSource}). Each image is built as an OCI layout
 * (busybox-static, then a layer of its files) and pushed to a registry on loopback: an open
 * one, or for a private image a basic-auth one that knows only its credentials (one registry
 * per set of credentials, started when first needed).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestImage as ConformanceImage, TestImageSource } from "@sbx/testing/conformance";
import { hostPlatform } from "../platform.js";
import { busyboxLayer, type TestImage, writeOciImage } from "./oci-layout.js";
import { startTestRegistry, type TestRegistry } from "./registry.js";
import type { TarEntry } from "./tar-layers.js";

export class RegistryImagePublisher implements TestImageSource {
  readonly #work = mkdtempSync(join(tmpdir(), "sbx-conformance-images-"));
  readonly #registries = new Map<string, Promise<TestRegistry>>();
  #published = 0;

  async publish(name: string, image: ConformanceImage): Promise<string> {
    const n = ++this.#published;
    const layout = join(this.#work, `layout-${n}`);
    await writeOciImage(layout, "1", layoutImageOf(image));
    const registry = await this.#registryFor(image.credentials);
    const repository = `conformance/${name.toLowerCase().replace(/[^a-z0-9]+/g, "-")}-${n}`;
    await registry.push(layout, "1", repository);
    rmSync(layout, { recursive: true, force: true });
    return `${registry.host}/${repository}:1`;
  }

  #registryFor(credentials: ConformanceImage["credentials"]): Promise<TestRegistry> {
    const key = credentials ? JSON.stringify([credentials.username, credentials.password]) : "";
    let registry = this.#registries.get(key);
    if (registry === undefined) {
      registry = credentials ? startTestRegistry("basic", { credentials }) : startTestRegistry("none");
      this.#registries.set(key, registry);
    }
    return registry;
  }

  async close(): Promise<void> {
    const registries = [...this.#registries.values()];
    this.#registries.clear();
    await Promise.all(registries.map(async (registry) => (await registry.catch(() => undefined))?.close()));
    rmSync(this.#work, { recursive: true, force: true });
  }
}

/** A conformance test image as an OCI image for this host: busybox, then its files and working dir. */
function layoutImageOf(image: ConformanceImage): TestImage {
  const entries: TarEntry[] = [];
  if (image.workingDir !== undefined && image.workingDir !== "/") {
    entries.push({ name: `${image.workingDir.slice(1)}/`, type: "directory", mode: 0o755 });
  }
  for (const [path, content] of Object.entries(image.files ?? {})) {
    entries.push({ name: path.slice(1), content, mode: 0o644 });
  }
  return {
    layers: entries.length > 0 ? [busyboxLayer(), entries] : [busyboxLayer()],
    platform: hostPlatform(),
    config: {
      Env: Object.entries(image.env ?? {}).map(([key, value]) => `${key}=${value}`),
      ...(image.workingDir !== undefined ? { WorkingDir: image.workingDir } : {}),
      ...(image.user !== undefined ? { User: image.user } : {}),
    },
  };
}
