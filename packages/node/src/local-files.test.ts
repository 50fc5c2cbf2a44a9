// Local files exist only where the runtime has them: a Node client's sandboxes copy to and
// from local paths; a client without local files (what @sbx/web builds) has no such methods,
// in its types (checked by tsc through the @ts-expect-error lines) and at run time.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SandboxClient as CoreClient, LocalSandboxFilesystem, SandboxFilesystem } from "@sbx/core";
import { createFakeServer } from "@sbx/testing";
import { afterAll, describe, expect, it } from "vitest";
import { Sandbox, SandboxClient } from "./index.js";

describe("local files by runtime", () => {
  const fake = createFakeServer();
  afterAll(() => fake.close());

  it("a Node sandbox copies to and from local paths, and is typed so", async () => {
    await using client = new SandboxClient({ transport: fake.transport });
    const sb: Sandbox = await client.sandboxes.create();
    expect(sb).toBeInstanceOf(Sandbox);
    expect(sb.filesystem).toBeInstanceOf(LocalSandboxFilesystem);
    const dir = await mkdtemp(join(tmpdir(), "sbx-local-"));
    try {
      await writeFile(join(dir, "in.txt"), "from the host");
      await sb.filesystem.copyFromLocal(join(dir, "in.txt"), "/tmp/in.txt");
      expect(await sb.filesystem.readText("/tmp/in.txt")).toBe("from the host");
      await sb.filesystem.copyToLocal("/tmp/in.txt", join(dir, "sub", "out.txt"));
      expect(await readFile(join(dir, "sub", "out.txt"), "utf8")).toBe("from the host");
    } finally {
      await rm(dir, { recursive: true, force: true });
      await sb.terminate();
    }
  });

  it("a client without local files has no local methods, in its types or at run time", async () => {
    await using client = new CoreClient({ transport: fake.transport });
    const sb = await client.sandboxes.create();
    expect(sb.filesystem).toBeInstanceOf(SandboxFilesystem);
    expect(sb.filesystem).not.toBeInstanceOf(LocalSandboxFilesystem);
    expect("copyFromLocal" in sb.filesystem).toBe(false);
    expect("copyToLocal" in sb.filesystem).toBe(false);
    if (false as boolean) {
      // @ts-expect-error browsers have no local files
      await sb.filesystem.copyFromLocal("/a", "/b");
      // @ts-expect-error browsers have no local files
      await sb.filesystem.copyToLocal("/a", "/b");
    }
    await sb.terminate();
  });
});
