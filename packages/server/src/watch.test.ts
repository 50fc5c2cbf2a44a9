// sb.filesystem.watch against the real server: changes made by processes inside the sandbox
// and by the SDK itself, recursion, filters, timeouts, and how a watch ends.
import * as sdk from "@sbx/node";
import { describe, expect, it } from "vitest";
import { realServerAvailable, useTestSandbox, useTestServer } from "./test-support.js";

const available = await realServerAvailable();

type Event = sdk.FileWatchEvent;
const show = (e: Event) => `${e.type} ${e.paths.join(" -> ")}`;

/** Reads events until one matches `last` (or the watch ends), failing after 20 s. */
async function eventsUntil(watch: sdk.FileWatch, last: (e: Event) => boolean): Promise<string[]> {
  const seen: string[] = [];
  const timer = setTimeout(() => watch.close(), 20_000);
  try {
    for await (const event of watch) {
      seen.push(show(event));
      if (last(event)) return seen;
    }
  } finally {
    clearTimeout(timer);
  }
  throw new Error(`the watch ended before the expected event; saw: ${JSON.stringify(seen)}`);
}

if (available) {
  describe("filesystem.watch (real server)", () => {
    const server = useTestServer();
    const box = useTestSandbox(server);

    it("reports creates, modifies, renames and deletes made by a process, in order", async () => {
      const sb = box.sandbox;
      await sb.filesystem.makeDirectory("/w1/sub");
      const watch = sb.filesystem.watch("/w1");
      await watch.ready;
      await sb.run("echo one > /w1/a; echo two >> /w1/a; mv /w1/a /w1/b; echo x > /w1/sub/nested; rm /w1/b");
      const seen = await eventsUntil(watch, (e) => e.type === "delete");
      // Shells may open-truncate-write, so several modifies can follow the create; dedupe them.
      const distinct = seen.filter((s, i) => s !== seen[i - 1]);
      expect(distinct).toEqual(["create /w1/a", "modify /w1/a", "rename /w1/a -> /w1/b", "delete /w1/b"]);
      // /w1/sub/nested is below the watched directory: not reported without `recursive`.
      expect(seen.some((s) => s.includes("nested"))).toBe(false);
    });

    it("watches every directory below with `recursive`, new ones included", async () => {
      const sb = box.sandbox;
      await sb.filesystem.makeDirectory("/w2/old");
      const watch = sb.filesystem.watch("/w2", { recursive: true, filter: ["create"] });
      await watch.ready;
      await sb.run("echo a > /w2/old/f1 && mkdir -p /w2/new/deeper && echo b > /w2/new/deeper/f2 && touch /w2/done");
      const seen = await eventsUntil(watch, (e) => e.paths[0] === "/w2/done");
      expect(seen).toEqual(
        expect.arrayContaining([
          "create /w2/old/f1",
          "create /w2/new",
          "create /w2/new/deeper",
          "create /w2/new/deeper/f2",
          "create /w2/done",
        ]),
      );
      expect(seen.every((s) => s.startsWith("create "))).toBe(true);
    });

    it("watches one file, which an SDK write replaces atomically (reported as one create, no temporary names)", async () => {
      const sb = box.sandbox;
      await sb.filesystem.writeText("v1", "/w3/file.txt");
      await sb.filesystem.writeText("other", "/w3/other.txt");
      const watch = sb.filesystem.watch("/w3/file.txt");
      await watch.ready;
      await sb.filesystem.writeText("v2", "/w3/file.txt");
      await sb.filesystem.writeText("changed", "/w3/other.txt");
      await sb.run("echo more >> /w3/file.txt");
      const seen = await eventsUntil(watch, (e) => e.type === "modify");
      expect(seen).toEqual(["create /w3/file.txt", "modify /w3/file.txt"]);
    });

    it("follows a symlink and reports paths under its target", async () => {
      const sb = box.sandbox;
      await sb.run("mkdir -p /w4/real && ln -s /w4/real /w4/link");
      const watch = sb.filesystem.watch("/w4/link");
      await watch.ready;
      await sb.run("touch /w4/real/x");
      expect(await eventsUntil(watch, () => true)).toEqual(["create /w4/real/x"]);
    });

    it("ends quietly after timeoutMs and on close(); fails with typed errors", async () => {
      const sb = box.sandbox;
      await sb.filesystem.makeDirectory("/w5");
      const timed = sb.filesystem.watch("/w5", { timeoutMs: 300 });
      const events: Event[] = [];
      for await (const e of timed) events.push(e);
      expect(events).toEqual([]);

      const closed = sb.filesystem.watch("/w5");
      await closed.ready;
      setTimeout(() => closed.close(), 50);
      for await (const e of closed) events.push(e);
      expect(events).toEqual([]);

      const missing = sb.filesystem.watch("/w5/missing");
      await expect(missing.ready).rejects.toBeInstanceOf(sdk.SandboxFilesystemNotFoundError);
      await expect(
        (async () => {
          for await (const _ of missing) void _;
        })(),
      ).rejects.toBeInstanceOf(sdk.SandboxFilesystemNotFoundError);

      expect(() => sb.filesystem.watch("relative/path")).toThrow(sdk.InvalidError);
      expect(() => sb.filesystem.watch("/w5", { filter: ["created" as "create"] })).toThrow(sdk.InvalidError);
      expect(() => sb.filesystem.watch("/w5", { timeoutMs: -1 })).toThrow(sdk.InvalidError);
    });

    it("ends when the sandbox stops", async () => {
      const sb = await box.client.sandboxes.create({ app: "watch-test" });
      await sb.filesystem.makeDirectory("/w6");
      const watch = sb.filesystem.watch("/w6");
      await watch.ready;
      await sb.run("touch /w6/before-stop");
      const ended = (async () => {
        const seen: string[] = [];
        for await (const e of watch) seen.push(show(e));
        return seen;
      })();
      await new Promise((resolve) => setTimeout(resolve, 200));
      await sb.terminate();
      expect(await ended).toContain("create /w6/before-stop");
    });
  });
}
