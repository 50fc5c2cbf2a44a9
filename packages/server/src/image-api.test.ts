// The images API on the real sbx server, through the public client: pulls from a registry on
// loopback (through a proxy that counts what it serves) with progress, a non-root image, a
// multi-platform index and a minimal Debian root; list, get and delete; imports of skopeo's
// oci-archive and docker-archive; images surviving a restart. Its local runtime does not start
// sandboxes from images yet: a create from one is refused before anything is made.
import { execFileSync } from "node:child_process";
import { lstatSync, mkdtempSync, readlinkSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FailedPreconditionError, type Image, NotFoundError, SandboxClient, UnsupportedError } from "@sbx/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_LAYER_ID_BASE } from "./images/index.js";
import { hostPlatform } from "./images/platform.js";
import { imageStoreAvailable } from "./images/test-support/available.js";
import { type BuiltImage, writeOciImage, writeOciIndex } from "./images/test-support/oci-layout.js";
import { startTestRegistry, type TestRegistry } from "./images/test-support/registry.js";
import { RegistryProxy } from "./images/test-support/registry-proxy.js";
import {
  APP_UID,
  busyboxImage,
  debianImage,
  multiPlatformImages,
  nonRootImage,
} from "./images/test-support/test-images.js";
import { errorOf, realServerAvailable, startTestServer } from "./test-support.js";

const available =
  (await realServerAvailable("real-server image tests")) &&
  (await imageStoreAvailable("real-server image tests", ["docker-registry", "skopeo", "mmdebstrap"]));

/** Where the server keeps layer `diffId` unpacked (under its data dir, root's alone). */
const layerDir = (dataDir: string, diffId: string) => join(dataDir, "images", "layers", diffId.replace(":", "-"));

async function listed(client: SandboxClient): Promise<Image[]> {
  const images: Image[] = [];
  for await (const image of client.images.list()) images.push(image);
  return images;
}

if (available) {
  describe("images on the real server", () => {
    let work: string;
    let layout: string;
    let registry: TestRegistry;
    let proxy: RegistryProxy;
    let server: Awaited<ReturnType<typeof startTestServer>>;
    let client: SandboxClient;
    const built = {} as Record<"busybox" | "app" | "multiHost" | "imported", BuiltImage>;
    /** Image `name` of the layout, pushed as sbx/<name>:<name>, as the server reaches it (through the proxy). */
    const ref = (name: string) => `${proxy.host}/sbx/${name}:${name}`;

    beforeAll(async () => {
      work = mkdtempSync(join(tmpdir(), "sbx-image-api-"));
      layout = join(work, "layout");
      registry = await startTestRegistry("none");
      proxy = await RegistryProxy.start(registry.host);
      built.busybox = await writeOciImage(layout, "busybox", busyboxImage());
      built.app = await writeOciImage(layout, "app", nonRootImage());
      const multi = await writeOciIndex(layout, "multi", multiPlatformImages());
      built.multiHost = multi.images[0] as BuiltImage;
      const base = busyboxImage();
      built.imported = await writeOciImage(layout, "imported", {
        ...base,
        layers: [
          ...base.layers,
          [
            { name: "srv/", type: "directory", mode: 0o755 },
            { name: "srv/imported.txt", content: "imported\n", uid: APP_UID, gid: APP_UID },
          ],
        ],
        config: { ...base.config, Env: ["IMPORTED=yes"] },
      });
      await registry.push(layout, "busybox", "sbx/busybox");
      await registry.push(layout, "app", "sbx/app");
      await registry.push(layout, "multi", "sbx/multi", { all: true });
      server = await startTestServer();
      client = new SandboxClient({ endpoint: server.url, token: server.token });
    });
    afterAll(async () => {
      await client?.close();
      await server?.close();
      server?.removeData();
      await proxy?.close();
      await registry?.close();
      if (work) rmSync(work, { recursive: true, force: true });
    });

    it("pulls an image once, with progress; list and get show it; a second pull downloads nothing", async () => {
      const progress: { bytesDone: number; bytesTotal: number }[] = [];
      const image = await client.images.fromRegistry(ref("busybox"), { onProgress: (p) => progress.push(p) });
      expect(image.id).toBe(`im-${built.busybox.configDigest.slice(7, 27)}`);
      expect(image.ref).toBe(ref("busybox"));
      expect(image.digest).toBe(built.busybox.manifestDigest);
      expect(image.builtin).toBe(false);
      expect(image.platform).toMatchObject({ os: "linux", architecture: hostPlatform().architecture });
      expect(image.sizeBytes).toBeGreaterThan(statSync("/usr/bin/busybox").size);
      const total = built.busybox.blobs.reduce((sum, b) => sum + b.size, 0);
      expect(progress.at(-1)).toEqual({ bytesDone: total, bytesTotal: total });
      const blobGets = proxy.blobGets().length;
      expect(blobGets).toBeGreaterThan(0);

      // The layer, unpacked under the data dir: root's alone, /bin/sh a link to busybox.
      const layer = layerDir(server.dataDir, built.busybox.diffIds[0] as string);
      expect(statSync(join(server.dataDir, "images")).mode & 0o777).toBe(0o700);
      expect(readlinkSync(join(layer, "bin/sh"))).toBe("/bin/busybox");

      const again = await client.images.fromRegistry(ref("busybox"));
      expect(again.id).toBe(image.id);
      expect(proxy.blobGets().length).toBe(blobGets); // the manifest is asked again, no blob
      for (const selector of [image.id, ref("busybox"), image.digest]) {
        expect((await client.images.get(selector)).id, selector).toBe(image.id);
      }
      const ids = (await listed(client)).map((i) => i.id);
      expect(ids).toContain(image.id);
      expect(ids.indexOf(image.id)).toBeLessThan(ids.indexOf("im-default"));
    });

    it("refuses a sandbox from a pulled image before anything is made (the runtime starts its default image only)", async () => {
      const image = await client.images.fromRegistry(ref("busybox"));
      for (const option of [image, image.id, ref("busybox")]) {
        const error = await errorOf(client.sandboxes.create({ app: "from-image", image: option }));
        expect(error).toBeInstanceOf(UnsupportedError);
        expect((error as Error).message).toMatch(/cannot start sandboxes from images yet/);
      }
      const made = [];
      for await (const sb of client.sandboxes.list({ app: "from-image", includeFinished: true })) made.push(sb.id);
      expect(made).toEqual([]);
      // A reference not pulled yet is pulled by the create, then refused all the same.
      const error = await errorOf(client.sandboxes.create({ app: "from-image", image: ref("app") }));
      expect(error).toBeInstanceOf(UnsupportedError);
      expect((await client.images.get(ref("app"))).id).toBe(`im-${built.app.configDigest.slice(7, 27)}`);
    });

    it("keeps a non-root image's User, WorkingDir and Env, and its files' owners (shifted into the layer id range)", async () => {
      const image = await client.images.fromRegistry(ref("app"));
      expect(image.config.user).toBe("app");
      expect(image.config.workingDir).toBe("/home/app");
      expect(image.config.env.HOME).toBe("/home/app");
      const layer = layerDir(server.dataDir, built.app.diffIds[1] as string);
      const notes = lstatSync(join(layer, "home/app/notes.txt"));
      expect([notes.uid, notes.gid]).toEqual([DEFAULT_LAYER_ID_BASE + APP_UID, DEFAULT_LAYER_ID_BASE + APP_UID]);
      expect(notes.mode & 0o777).toBe(0o640);
      // Layers are shared: the busybox layer under it is the one the busybox image has.
      expect(built.app.diffIds[0]).toBe(built.busybox.diffIds[0]);
    });

    it("pulls this host's image from a multi-platform index", async () => {
      const image = await client.images.fromRegistry(ref("multi"));
      expect(image.digest).toBe(built.multiHost.manifestDigest);
      expect(image.platform.architecture).toBe(hostPlatform().architecture);
      expect(image.id).toBe(`im-${built.multiHost.configDigest.slice(7, 27)}`);
    });

    it("imports skopeo's oci-archive and docker-archive of one image as that image", async () => {
      const ociArchive = join(work, "imported-oci.tar");
      const dockerArchive = join(work, "imported-docker.tar");
      const skopeo = (to: string) => execFileSync("skopeo", ["copy", "--quiet", `oci:${layout}:imported`, to]);
      skopeo(`oci-archive:${ociArchive}:imported`);
      skopeo(`docker-archive:${dockerArchive}:example.test/sbx/imported:1`);

      const fromOci = await client.images.import(ociArchive);
      expect(fromOci.id).toBe(`im-${built.imported.configDigest.slice(7, 27)}`);
      expect(fromOci.digest).toBe(built.imported.manifestDigest);
      expect(fromOci.refs).toEqual([]); // "imported" alone names no repository
      expect(fromOci.config.env.IMPORTED).toBe("yes");
      const fromDocker = await client.images.import(dockerArchive);
      expect(fromDocker.id).toBe(fromOci.id); // the same config: the same image
      expect(fromDocker.refs).toEqual(["example.test/sbx/imported:1"]);
      expect((await client.images.get("example.test/sbx/imported:1")).id).toBe(fromOci.id);
      const file = lstatSync(join(layerDir(server.dataDir, built.imported.diffIds[1] as string), "srv/imported.txt"));
      expect(file.uid).toBe(DEFAULT_LAYER_ID_BASE + APP_UID);
    });

    it("deletes an image (its own layers go, shared ones stay); the default image cannot be deleted", async () => {
      const image = await client.images.fromRegistry(ref("app"));
      await client.images.delete(image);
      expect(await errorOf(client.images.get(image.id))).toBeInstanceOf(NotFoundError);
      expect((await listed(client)).map((i) => i.id)).not.toContain(image.id);
      expect(await errorOf(client.images.delete(image.id))).toBeInstanceOf(NotFoundError);
      // The busybox layer is the busybox image's too; the app layer was this image's alone.
      expect(statSync(layerDir(server.dataDir, built.app.diffIds[0] as string)).isDirectory()).toBe(true);
      expect(() => statSync(layerDir(server.dataDir, built.app.diffIds[1] as string))).toThrow(/ENOENT/);
      expect(await errorOf(client.images.delete("im-default"))).toBeInstanceOf(FailedPreconditionError);
    });

    it("pulls a minimal Debian root built by mmdebstrap from the Debian mirror apt uses", {
      timeout: 600_000,
    }, async () => {
      const debian = await writeOciImage(join(work, "debian-layout"), "debian", await debianImage());
      await registry.push(join(work, "debian-layout"), "debian", "sbx/debian");
      const image = await client.images.fromRegistry(ref("debian"));
      expect(image.digest).toBe(debian.manifestDigest);
      expect(image.sizeBytes).toBeGreaterThan(30 * 1024 * 1024);
      const root = layerDir(server.dataDir, debian.diffIds[0] as string);
      expect(readlinkSync(join(root, "bin"))).toBe("usr/bin"); // merged /usr
      for (const program of ["usr/bin/bash", "usr/bin/dpkg", "usr/bin/apt-get"]) {
        expect(statSync(join(root, program)).isFile(), program).toBe(true);
      }
      expect(() => statSync(join(root, "usr/bin/python3"))).toThrow(/ENOENT/);
    });

    it("keeps its images across a restart: listed, got by reference, not downloaded again", async () => {
      const before = (await listed(client)).filter((i) => !i.builtin);
      expect(before.length).toBeGreaterThanOrEqual(3);
      await client.close();
      await server.close();
      server = await startTestServer({ dataDir: server.dataDir });
      client = new SandboxClient({ endpoint: server.url, token: server.token });
      const after = (await listed(client)).filter((i) => !i.builtin);
      expect(after).toEqual(before);
      const blobGets = proxy.blobGets().length;
      const image = await client.images.fromRegistry(ref("busybox"));
      expect(image.id).toBe(`im-${built.busybox.configDigest.slice(7, 27)}`);
      expect(proxy.blobGets().length).toBe(blobGets);
      expect((await client.images.get(ref("multi"))).digest).toBe(built.multiHost.manifestDigest);
    });
  });
}
