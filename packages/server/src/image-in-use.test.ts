// An image a sandbox still uses cannot be deleted through the real server: the engine knows
// which sandbox was started from which image, and the image store asks it. Sandboxes the
// runtime started ahead of demand (its warm pool for the image) do not hold it: they go first.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FailedPreconditionError, NotFoundError, SandboxClient } from "@sbx/node";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { imageStoreAvailable } from "./images/test-support/available.js";
import { type BuiltImage, writeOciImage } from "./images/test-support/oci-layout.js";
import { startTestRegistry, type TestRegistry } from "./images/test-support/registry.js";
import { busyboxImage } from "./images/test-support/test-images.js";
import { SandboxCgroup } from "./runtime/local/cgroups.js";
import { errorOf, realServerAvailable, startTestServer } from "./test-support.js";

const available =
  (await realServerAvailable("real-server image in-use tests")) &&
  (await imageStoreAvailable("real-server image in-use tests", ["docker-registry", "skopeo"]));

if (available) {
  describe("an image in use", () => {
    let work: string;
    let registry: TestRegistry;
    let busybox: BuiltImage;
    let server: Awaited<ReturnType<typeof startTestServer>>;
    let client: SandboxClient;
    let reference: string;

    const start = async (dataDir: string) => {
      server = await startTestServer({ dataDir });
      client = new SandboxClient({ endpoint: server.url, token: server.token });
    };

    beforeAll(async () => {
      work = mkdtempSync(join(tmpdir(), "sbx-image-in-use-"));
      busybox = await writeOciImage(join(work, "layout"), "busybox", busyboxImage());
      registry = await startTestRegistry("none");
      await registry.push(join(work, "layout"), "busybox", "sbx/busybox");
      reference = `${registry.host}/sbx/busybox:busybox`;
      await start(join(work, "data"));
    });
    afterAll(async () => {
      await client?.close();
      await server?.close();
      await registry?.close();
      if (work) rmSync(work, { recursive: true, force: true });
    });

    it("cannot be deleted while a sandbox started from it runs; once it has ended, it can", async () => {
      const image = await client.images.fromRegistry(reference);
      const sb = await client.sandboxes.create({ app: "in-use", image });
      expect(sb.imageId).toBe(image.id);
      const error = await errorOf(client.images.delete(image.id));
      expect(error).toBeInstanceOf(FailedPreconditionError);
      expect((error as Error).message).toContain(sb.id);
      expect((await client.images.get(image.id)).id).toBe(image.id);

      // Its warm pool is filling meanwhile (a create from it was made): no obstacle.
      await sb.terminate({ wait: true });
      await client.images.delete(image.id);
      expect(await errorOf(client.images.get(image.id))).toBeInstanceOf(NotFoundError);
      expect(readdirSync(join(server.dataDir, "images", "layers"))).toEqual([]);
    });

    it("a sandbox whose processes outlived its destroy holds its image until they are gone", async () => {
      const image = await client.images.fromRegistry(reference);
      const sb = await client.sandboxes.create({ app: "in-use", image });
      // Its destroy finds processes left in its cgroup (as when one in D state is not dead yet),
      // until `outliving` ends.
      const destroy = SandboxCgroup.prototype.destroy;
      let outliving = true;
      const spy = vi.spyOn(SandboxCgroup.prototype, "destroy").mockImplementation(async function (this: SandboxCgroup) {
        const emptied = await destroy.call(this);
        return emptied && !(outliving && this.name.endsWith(sb.id));
      });
      try {
        await sb.terminate({ wait: true });
        const error = await errorOf(client.images.delete(image.id));
        expect(error).toBeInstanceOf(FailedPreconditionError);
        expect((error as Error).message).toMatch(/used by a sandbox/);
        outliving = false; // the next try empties its cgroup: then the image is free
        for (let i = 0; ; i++) {
          try {
            await client.images.delete(image.id);
            break;
          } catch (failure) {
            if (!(failure instanceof FailedPreconditionError) || i === 200) throw failure;
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        }
        expect(await errorOf(client.images.get(image.id))).toBeInstanceOf(NotFoundError);
      } finally {
        spy.mockRestore();
      }
    });

    it("a sandbox running when the server stopped does not hold its image after the restart", async () => {
      const image = await client.images.fromRegistry(reference);
      expect(image.digest).toBe(busybox.manifestDigest);
      const sb = await client.sandboxes.create({ app: "in-use", image });
      expect(await errorOf(client.images.delete(image.id))).toBeInstanceOf(FailedPreconditionError);
      const dataDir = server.dataDir;
      await client.close();
      await server.close();
      await start(dataDir);
      // It was terminated by the stop, and nothing starts it again: its image is free.
      expect((await client.sandboxes.fromId(sb.id)).imageId).toBe(image.id);
      await client.images.delete(image.id);
      expect(await errorOf(client.images.get(image.id))).toBeInstanceOf(NotFoundError);
    });
  });
}
