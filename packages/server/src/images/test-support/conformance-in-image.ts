/**
 * Test support: the whole conformance suite against a real server, every sandbox of it started
 * from one pulled image (the suite's `sandboxImage`), for the enclosing test file. One registry
 * on loopback (behind a proxy that counts what it serves) and one server for the file: the
 * image is pushed, and pulled by a first create before the suite; after it, what reached the
 * registry is checked (that first pull alone: no later create downloaded anything), and a
 * server restarted on the same data dir lists the image and starts a sandbox from it without a
 * download.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as sdk from "@sbx/node";
import { defineConformanceSuite, SERVER_KNOWN_DIFFERENCES } from "@sbx/testing/conformance";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer } from "../../test-support.js";
import { RegistryImagePublisher } from "./conformance-images.js";
import { type TestImage, writeOciImage } from "./oci-layout.js";
import { startTestRegistry, type TestRegistry } from "./registry.js";
import { RegistryProxy } from "./registry-proxy.js";

const t = { describe, it, beforeAll, afterAll };

/**
 * Registers, in the calling test file, the conformance suite in sandboxes from `image` (named
 * `name`), and the checks of what the registry served and of a restart after it.
 */
export function conformanceInImage(name: string, image: () => Promise<TestImage> | TestImage): void {
  describe(`the conformance suite in sandboxes from a pulled ${name} image`, () => {
    let work: string;
    let registry: TestRegistry;
    let proxy: RegistryProxy;
    let server: Awaited<ReturnType<typeof startTestServer>>;
    let reference: string;
    let imageId: string;
    /** Requests the registry had served when the image was first pulled. */
    let servedByPull: number;
    // The image cases' own test images, from registries of their own.
    const testImages = new RegistryImagePublisher();

    beforeAll(async () => {
      work = mkdtempSync(join(tmpdir(), "sbx-conformance-in-image-"));
      const layout = join(work, "layout");
      await writeOciImage(layout, "1", await image());
      registry = await startTestRegistry("none");
      await registry.push(layout, "1", `sbx/${name}`);
      rmSync(layout, { recursive: true, force: true });
      proxy = await RegistryProxy.start(registry.host);
      reference = `${proxy.host}/sbx/${name}:1`;
      server = await startTestServer();
      // The first create pulls the image (as `docker run` does); every later one finds it kept.
      const client = new sdk.SandboxClient({ endpoint: server.url, token: server.token });
      try {
        await using first = await client.sandboxes.create({ app: "first-create", image: reference });
        imageId = first.imageId ?? "";
      } finally {
        await client.close();
      }
      servedByPull = proxy.requests.length;
      expect(imageId).toMatch(/^im-[0-9a-f]{20}$/);
      expect(proxy.blobGets().length).toBeGreaterThan(0);
    }, 600_000);

    afterAll(async () => {
      await server?.close();
      server?.removeData();
      await testImages.close();
      await proxy?.close();
      await registry?.close();
      if (work) rmSync(work, { recursive: true, force: true });
    });

    defineConformanceSuite(t, {
      name: `node → real server, sandboxes from a ${name} image`,
      sdk,
      makeClient: () => new sdk.SandboxClient({ endpoint: server.url, token: server.token }),
      endpoint: () => ({ url: server.url, token: server.token }),
      images: testImages,
      sandboxImage: () => reference,
      knownDifferences: SERVER_KNOWN_DIFFERENCES,
    });

    describe("after the suite", () => {
      it("every create named the image by its reference and none after the first downloaded anything: the registry served the first pull alone", async () => {
        expect(proxy.requests.length).toBe(servedByPull);
        const client = new sdk.SandboxClient({ endpoint: server.url, token: server.token });
        try {
          const byImage = new Map<string, number>();
          for await (const sb of client.sandboxes.list({ includeFinished: true })) {
            byImage.set(sb.imageId ?? "", (byImage.get(sb.imageId ?? "") ?? 0) + 1);
          }
          // The suite's sandboxes, but for the few whose case names an image of its own.
          const all = [...byImage.values()].reduce((sum, n) => sum + n, 0);
          expect(byImage.get(imageId) ?? 0, JSON.stringify([...byImage])).toBeGreaterThan(all * 0.9);
        } finally {
          await client.close();
        }
      });

      it("a server restarted on the same data dir lists the image and starts a sandbox from its reference without a download", async () => {
        await server.close();
        server = await startTestServer({ dataDir: server.dataDir });
        const client = new sdk.SandboxClient({ endpoint: server.url, token: server.token });
        try {
          const listed: sdk.Image[] = [];
          for await (const image of client.images.list()) listed.push(image);
          expect(listed.find((image) => image.id === imageId)?.refs).toContain(reference);
          await using sb = await client.sandboxes.create({ app: "after-restart", image: reference });
          expect(sb.imageId).toBe(imageId);
          const r = await sb.run('echo "started from $0"; ls /bin/sh');
          expect(r.stdout).toBe("started from sh\n/bin/sh\n");
          expect(proxy.requests.length).toBe(servedByPull);
        } finally {
          await client.close();
        }
      });
    });
  });
}
