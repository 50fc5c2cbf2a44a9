// The images API on the real sbx server, through the public client: pulls from a registry on
// loopback (through a proxy that counts what it serves) with progress, a non-root image, a
// multi-platform index and a minimal Debian root; list, get and delete; imports of skopeo's
// oci-archive and docker-archive; images surviving a restart; sandboxes started from them (the
// busybox-only root, the non-root image as its User, the Debian root).
import { execFileSync } from "node:child_process";
import { lstatSync, mkdtempSync, readlinkSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  FailedPreconditionError,
  type Image,
  NotFoundError,
  SandboxClient,
  SandboxFilesystemPermissionError,
  UnsupportedError,
} from "@sbx/node";
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

    it("starts sandboxes from a pulled image: a busybox-only root runs sh -c, exec, a terminal, files and watch", async () => {
      const image = await client.images.fromRegistry(ref("busybox"));
      for (const option of [image, image.id, ref("busybox")]) {
        await using sb = await client.sandboxes.create({ app: "from-image", image: option });
        expect(sb.imageId).toBe(image.id);
      }
      await using sb = await client.sandboxes.create({ app: "from-image", image });
      const sh = await sb.run('echo "hello from $0"; command -v python3 bash || echo none; id -u');
      expect(sh.stdout).toBe("hello from sh\nnone\n0\n");
      const ls = await sb.exec(["ls", "/"]);
      expect((await ls.stdout.readText()).split("\n")).toContain("bin");
      expect(await ls.wait()).toBe(0);
      const tty = await sb.exec(["sh", "-c", "tty"], { pty: true });
      expect(await tty.stdout.readText()).toMatch(/^\/dev\/pts\/\d+\r\n$/);
      await sb.filesystem.makeDirectory("/work");
      const watch = sb.filesystem.watch("/work");
      try {
        await watch.ready;
        await sb.filesystem.writeText("written through the API\n", "/work/note.txt");
        for await (const event of watch) if (event.paths.includes("/work/note.txt")) break;
      } finally {
        watch.close();
      }
      expect(await sb.filesystem.readText("/work/note.txt")).toBe("written through the API\n");
      expect((await sb.run("cat /work/note.txt; stat -c %u:%g /work/note.txt")).stdout).toBe(
        "written through the API\n0:0\n",
      );
      // A reference not pulled yet is pulled by the create.
      await using app = await client.sandboxes.create({ app: "from-image", image: ref("app") });
      expect(app.imageId).toBe(`im-${built.app.configDigest.slice(7, 27)}`);
    });

    it("runs a non-root image's processes and file calls as its User, its files' owners kept", async () => {
      await using sb = await client.sandboxes.create({ app: "from-image", image: ref("app") });
      const who = await sb.run(
        'whoami; pwd; echo "$HOME"; ls -ln /home/app; cat notes.txt; touch /etc/x || echo refused',
      );
      expect(who.stdout).toMatch(
        /^app\n\/home\/app\n\/home\/app\n(total \d+\n)?drwxr-xr-x +\d+ 1234 +1234 .* bin\n-rw-r----- +1 1234 +1234 .* notes\.txt\nmine\nrefused\n$/,
      );
      expect((await sb.run("ls -ln / | grep -w etc")).stdout).toMatch(/^d\S+ +\d+ 0 +0 /);
      await sb.filesystem.writeText("from the API\n", "/home/app/up.txt");
      expect((await sb.run("stat -c %u:%g /home/app/up.txt")).stdout).toBe("1234:1234\n");
      await expect(sb.filesystem.writeText("x", "/etc/not-yours")).rejects.toBeInstanceOf(
        SandboxFilesystemPermissionError,
      );
      // On the host, its processes run as the sandbox's block's ids: BASE + 1234.
      const [inside, base] = (await sb.run("cat /proc/self/uid_map")).stdout.trim().split(/\s+/).map(Number);
      expect(inside).toBe(0);
      expect(base).toBeGreaterThanOrEqual(2 ** 31);
      const sleeping = await sb.exec(["sleep", "30"]);
      try {
        // (ps prints ids above 2^31 as negative numbers: /proc says them as they are)
        const owners = execFileSync("sh", ["-c", "grep -h -A8 '^Name:\tsleep$' /proc/[0-9]*/status | grep '^Uid:'"], {
          encoding: "utf8",
        });
        expect(owners.split(/\s+/)).toContain(String((base as number) + APP_UID));
      } finally {
        await sleeping.kill();
      }
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

    it("starts an image whose /etc is a symlink with its /etc; refuses one whose /etc leads out of its root (UnsupportedError)", async () => {
      const base = busyboxImage();
      const withEtc = async (name: string, linkname: string) => {
        await writeOciImage(layout, name, {
          ...base,
          layers: [
            ...base.layers,
            [
              { name: "etc", type: "symlink", linkname },
              { name: "usr/etc/marker", content: "the image's usr/etc\n" },
            ],
          ],
        });
        const archive = join(work, `${name}.tar`);
        execFileSync("skopeo", ["copy", "--quiet", `oci:${layout}:${name}`, `oci-archive:${archive}:${name}`]);
        return client.images.import(archive);
      };
      const linked = await withEtc("etc-linked", "usr/etc");
      await using sb = await client.sandboxes.create({ app: "from-image", image: linked.id });
      const etc = await sb.run("readlink /etc; cat /etc/marker; grep -c '^nameserver' /etc/resolv.conf");
      expect(etc.stdout).toBe("usr/etc\nthe image's usr/etc\n1\n");

      const escaping = await withEtc("etc-escaping", "../../..");
      const refused = await errorOf(client.sandboxes.create({ app: "from-image", image: escaping.id }));
      expect(refused).toBeInstanceOf(UnsupportedError);
      expect((refused as Error).message).toMatch(
        new RegExp(`image ${escaping.id} cannot be started: its /etc is a symlink that leads out of the image's root`),
      );
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
      // And a sandbox from it: Debian's own bash, coreutils, apt; root's files root's.
      await using sb = await client.sandboxes.create({ app: "from-image", image });
      const r = await sb.run(
        "bash -c 'echo $BASH_VERSINFO; cat /etc/debian_version; id -u; stat -c %u:%g /etc/passwd; apt-get --version | head -1; dpkg -s coreutils | grep -c installed'",
      );
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^5\n\d+\.\d+\n0\n0:0\napt \S+ \(\w+\)\n1\n$/);
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
