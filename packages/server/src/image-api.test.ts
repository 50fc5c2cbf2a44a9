// The images API on the sbx server as it is today, with no image store wired in: its default
// image is an image like any other (listed, got, started from, kept with the sandbox across a
// restart, not deletable), and whatever needs a store is a clear UnsupportedError.
import { FailedPreconditionError, SandboxClient, UnsupportedError } from "@sbx/node";
import { afterAll, describe, expect, it } from "vitest";
import { errorOf, realServerAvailable, startTestServer } from "./test-support.js";

const available = await realServerAvailable();

if (available) {
  describe("images on a server without an image store", () => {
    const servers: Awaited<ReturnType<typeof startTestServer>>[] = [];
    afterAll(async () => {
      for (const server of servers) await server.close();
      servers[0]?.removeData();
    });

    it("lists, gets and starts from its default image, keeps it with the sandbox across a restart, and refuses pulls and imports", async () => {
      const first = await startTestServer();
      servers.push(first);
      let client = new SandboxClient({ endpoint: first.url, token: first.token });
      const listed = [];
      for await (const image of client.images.list()) listed.push(image);
      expect(listed.map((i) => [i.id, i.builtin])).toEqual([["im-default", true]]);
      const image = await client.images.get("im-default");
      expect(image.config.env.PATH).toContain("/usr/bin");
      expect(image.platform.os).toBe("linux");

      const sb = await client.sandboxes.create({ app: "images", image });
      expect(sb.imageId).toBe("im-default");
      const p = await sb.exec(["sh", "-c", 'echo "$HOME"']);
      expect(await p.stdout.readText()).toBe("/root\n");

      const pull = await errorOf(client.images.fromRegistry("127.0.0.1:5000/sbx/anything:1"));
      expect(pull).toBeInstanceOf(UnsupportedError);
      expect((pull as Error).message).toMatch(/no image store/);
      const create = await errorOf(client.sandboxes.create({ app: "images", image: "127.0.0.1:5000/sbx/anything:1" }));
      expect(create).toBeInstanceOf(UnsupportedError);
      const imported = await errorOf(client.images.importArchive(new Uint8Array(1024)));
      expect(imported).toBeInstanceOf(UnsupportedError);
      expect((imported as Error).message).toMatch(/no image store/);
      expect(await errorOf(client.images.delete("im-default"))).toBeInstanceOf(FailedPreconditionError);
      await client.close();
      await first.close();

      const second = await startTestServer({ dataDir: first.dataDir });
      servers.push(second);
      client = new SandboxClient({ endpoint: second.url, token: second.token });
      expect((await client.sandboxes.fromId(sb.id)).imageId).toBe("im-default");
      await client.close();
    });
  });
}
