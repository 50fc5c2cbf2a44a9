// How a registry's refusals and failures reach a client of the real sbx server, typed and naming
// the registry or image: credentials against an htpasswd registry (good, wrong, missing),
// unknown repositories and tags, a registry that is down (and a retry once it is back), a
// tampered blob (refused, nothing kept), a registry spoken to over plain HTTP only when the
// server is told it is insecure; and a start whose image store cannot be opened.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuthenticationError, ConnectionError, NotFoundError, SandboxClient, SandboxError } from "@sbx/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { imageStoreAvailable } from "./images/test-support/available.js";
import { type BuiltImage, writeOciImage } from "./images/test-support/oci-layout.js";
import { startTestRegistry, TEST_PASSWORD, TEST_USER, type TestRegistry } from "./images/test-support/registry.js";
import { RegistryProxy } from "./images/test-support/registry-proxy.js";
import { busyboxImage, nonRootImage } from "./images/test-support/test-images.js";
import { errorOf, realServerAvailable, startTestServer } from "./test-support.js";

const available =
  (await realServerAvailable("real-server registry tests")) &&
  (await imageStoreAvailable("real-server registry tests", ["docker-registry", "skopeo", "htpasswd"]));

if (available) {
  describe("registries as the real server's clients see them", () => {
    let work: string;
    let layout: string;
    let open: TestRegistry;
    let basic: TestRegistry;
    let proxy: RegistryProxy;
    let server: Awaited<ReturnType<typeof startTestServer>>;
    let client: SandboxClient;
    const built = {} as Record<"busybox" | "app", BuiltImage>;

    beforeAll(async () => {
      work = mkdtempSync(join(tmpdir(), "sbx-image-registry-"));
      layout = join(work, "layout");
      built.busybox = await writeOciImage(layout, "busybox", busyboxImage());
      built.app = await writeOciImage(layout, "app", nonRootImage());
      open = await startTestRegistry("none");
      basic = await startTestRegistry("basic");
      await open.push(layout, "busybox", "sbx/busybox");
      await open.push(layout, "app", "sbx/tampered");
      await basic.push(layout, "busybox", "private/busybox");
      proxy = await RegistryProxy.start(open.host);
      server = await startTestServer();
      // No retries: each failure is the registry's, reported once.
      client = new SandboxClient({ endpoint: server.url, token: server.token, maxRetries: 0 });
    });
    afterAll(async () => {
      await client?.close();
      await server?.close();
      server?.removeData();
      await proxy?.close();
      await open?.close();
      await basic?.close();
      if (work) rmSync(work, { recursive: true, force: true });
    });

    it("a private image needs its credentials: missing or wrong ones are AuthenticationError naming the registry", async () => {
      const reference = `${basic.host}/private/busybox:busybox`;
      for (const credentials of [undefined, { username: TEST_USER, password: "wrong-password" }]) {
        const error = await errorOf(client.images.fromRegistry(reference, credentials ? { credentials } : {}));
        expect(error, JSON.stringify(credentials)).toBeInstanceOf(AuthenticationError);
        expect((error as AuthenticationError).registry).toBe(basic.host);
        expect((error as Error).message).toContain(basic.host);
        expect((error as Error).message).not.toContain("wrong-password");
      }
      // A create cannot give credentials: the registry refuses it alike.
      const create = await errorOf(client.sandboxes.create({ app: "registry", image: reference }));
      expect(create).toBeInstanceOf(AuthenticationError);
      const image = await client.images.fromRegistry(reference, {
        credentials: { username: TEST_USER, password: TEST_PASSWORD },
      });
      expect(image.digest).toBe(built.busybox.manifestDigest);
      expect(image.ref).toBe(reference);
      // The client's own token was never taken for the one refused.
      expect((await client.images.get(reference)).id).toBe(image.id);
    });

    it("an unknown repository or tag is NotFoundError naming it, from fromRegistry and from create", async () => {
      const missingTag = `${open.host}/sbx/busybox:no-such-tag`;
      for (const attempt of [
        () => client.images.fromRegistry(missingTag),
        () => client.sandboxes.create({ app: "registry", image: missingTag }),
      ]) {
        const error = await errorOf(attempt());
        expect(error).toBeInstanceOf(NotFoundError);
        expect((error as Error).message).toContain("no-such-tag");
      }
      const missingRepository = await errorOf(client.images.fromRegistry(`${open.host}/sbx/nobody-has-this:1`));
      expect(missingRepository).toBeInstanceOf(NotFoundError);
      expect((missingRepository as Error).message).toContain("sbx/nobody-has-this");
    });

    it("a registry that is down is ConnectionError naming it; once it is back the same pull works", async () => {
      const reference = `${open.host}/sbx/busybox:busybox`;
      await open.stop();
      try {
        const error = await errorOf(client.images.fromRegistry(reference));
        expect(error).toBeInstanceOf(ConnectionError);
        expect((error as ConnectionError).registry).toBe(open.host);
        expect((error as Error).message).toContain(open.host);
      } finally {
        await open.start();
      }
      expect((await client.images.fromRegistry(reference)).digest).toBe(built.busybox.manifestDigest);
    });

    it("a tampered blob is a SandboxError saying so, and nothing of the pull is kept", async () => {
      const layer = built.app.blobs[1] as { digest: string };
      proxy.tamperBlob(layer.digest);
      const reference = `${proxy.host}/sbx/tampered:app`;
      const error = await errorOf(client.images.fromRegistry(reference));
      expect(error).toBeInstanceOf(SandboxError);
      expect((error as Error).name).toBe("SandboxError");
      expect((error as Error).message).toMatch(/digest/);
      expect(await errorOf(client.images.get(reference))).toBeInstanceOf(NotFoundError);
      const store = join(server.dataDir, "images");
      expect(readdirSync(join(store, "layers"))).not.toContain((built.app.diffIds[1] as string).replace(":", "-"));
      expect(readdirSync(join(store, "downloads")).filter((f) => f.includes(layer.digest.slice(7)))).toEqual([]);
      expect(readdirSync(join(store, "tmp"))).toEqual([]);
      // The registry's own bytes are fine: pulled from it directly, the image comes whole.
      const image = await client.images.fromRegistry(`${open.host}/sbx/tampered:app`);
      expect(image.digest).toBe(built.app.manifestDigest);
    });

    it("speaks plain HTTP to a registry off loopback only when told it is insecure", async () => {
      // A v4-mapped address reaches the registry on 127.0.0.1, yet is not a loopback name.
      const registry = `[::ffff:127.0.0.1]:${open.host.split(":")[1]}`;
      const reference = `${registry}/sbx/busybox:busybox`;
      const refused = await errorOf(client.images.fromRegistry(reference));
      expect(refused).toBeInstanceOf(ConnectionError);
      expect((refused as ConnectionError).registry).toBe(registry);

      const insecure = await startTestServer({ insecureRegistries: [registry] });
      const insecureClient = new SandboxClient({ endpoint: insecure.url, token: insecure.token });
      try {
        const image = await insecureClient.images.fromRegistry(reference);
        expect(image.digest).toBe(built.busybox.manifestDigest);
      } finally {
        await insecureClient.close();
        await insecure.close();
        insecure.removeData();
      }
      await expect(startTestServer({ insecureRegistries: ["not a registry"] })).rejects.toThrow(
        /insecureRegistries: "not a registry" is not a registry host/,
      );
    });

    it("a start whose image store cannot be opened says which store and why", async () => {
      const dataDir = mkdtempSync(join(tmpdir(), "sbx-bad-store-"));
      try {
        mkdirSync(join(dataDir, "elsewhere"));
        symlinkSync(join(dataDir, "elsewhere"), join(dataDir, "images"));
        await expect(startTestServer({ dataDir })).rejects.toThrow(
          `the image store in ${join(dataDir, "images")} cannot be opened: the image store's dir ${join(dataDir, "images")} must be a directory owned by root (not a symlink)`,
        );
      } finally {
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  });
}
