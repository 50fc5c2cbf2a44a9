// A sandbox's disk is a sparse ext4 image copied from a ready one: what the copy writes (and
// what each create puts in the page cache) is the filesystem's metadata alone, a few hundred
// KiB for the default 10 GiB, not the 4 MiB of descriptor blocks kept for online growth.
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { diskTemplateName, ensureDiskTemplate } from "./sandbox-disk.js";

describe("sandbox disk templates", () => {
  const work = mkdtempSync(join(tmpdir(), "sbx-disk-"));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("a 10 GiB disk with a little content holds under 1 MiB on the host", async () => {
    const contents = join(work, "contents");
    mkdirSync(join(contents, "usr", "local"), { recursive: true });
    writeFileSync(join(contents, "usr", "local", "hello"), "hello\n");
    const template = await ensureDiskTemplate(join(work, diskTemplateName(10_240)), 10_240, contents);
    const st = statSync(template);
    expect(st.size).toBe(10_240 * 2 ** 20);
    expect(st.blocks * 512).toBeLessThan(2 ** 20);
  });

  it("a template's name says the options it was made with (one made otherwise is never copied)", () => {
    expect(diskTemplateName(10_240)).toMatch(/^disk-10240-[0-9a-f]{8}\.img$/);
    expect(diskTemplateName(512)).toMatch(/^disk-512-/);
  });
});
