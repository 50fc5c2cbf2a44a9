// The sandbox uid range: refused when it overlaps any id the host hands out or the image
// store's layer ids, cut into blocks of 65,536 ids, one per live sandbox, freed blocks coming
// back last.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  DEFAULT_LAYER_ID_BASE,
  DEFAULT_RANGE_SLOTS,
  defaultSandboxRange,
  defaultSandboxRangeAt,
  ID_BLOCK,
  IdBlockAllocator,
  MAX_HOST_ID,
  sandboxRangeProblems,
  uidRangeProblems,
} from "./uid-range.js";

describe("the sandbox uid range", () => {
  const dir = mkdtempSync(join(tmpdir(), "sbx-uids-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const files = {
    passwd: join(dir, "passwd"),
    group: join(dir, "group"),
    subuid: join(dir, "subuid"),
    subgid: join(dir, "subgid"),
  };
  writeFileSync(files.passwd, "root:x:0:0:root:/root:/bin/bash\nsvc:x:3000000000:100::/:/bin/false\n");
  writeFileSync(files.group, "root:x:0:\n# a comment\nbig:x:2100000005:\n");
  writeFileSync(files.subuid, "alice:100000:65536\n");
  writeFileSync(files.subgid, "alice:2000500000:1000\n");
  const check = (start: number, count: number) => uidRangeProblems({ start, count }, Object.values(files));

  it("is refused where it overlaps an account, a group or a subordinate range", async () => {
    expect(await check(2_000_000_000, 65_536)).toEqual([]);
    expect((await check(2_100_000_000, 65_536)).join()).toContain("/group");
    expect((await check(2_000_499_000, 2_000)).join()).toContain("/subgid");
    expect((await check(150_000, 10)).join()).toContain("/subuid");
    expect((await check(0, 10)).join()).toContain("positive");
    // Ids above 2^31 are fine (the server writes the maps); (uid_t)-1 is not an id.
    expect(await check(3_100_000_000, 65_536)).toEqual([]);
    expect((await check(MAX_HOST_ID, 2)).join()).toContain("ends past 4294967294");
  });

  it("is a whole number of blocks, clear of the image store's layer ids", async () => {
    const sandboxes = (start: number, count: number) =>
      sandboxRangeProblems({ start, count }, DEFAULT_LAYER_ID_BASE, Object.values(files));
    expect(await sandboxes(2 ** 31, 4 * ID_BLOCK)).toEqual([]);
    expect((await sandboxes(2 ** 31, ID_BLOCK + 1)).join()).toContain("whole number of blocks");
    expect((await sandboxes(DEFAULT_LAYER_ID_BASE - ID_BLOCK, 2 * ID_BLOCK)).join()).toContain("layer ids");
    expect((await sandboxes(DEFAULT_LAYER_ID_BASE + ID_BLOCK - 1, ID_BLOCK)).join()).toContain("layer ids");
    expect(await sandboxes(DEFAULT_LAYER_ID_BASE + ID_BLOCK, ID_BLOCK)).toEqual([]);
  });

  it("refuses layer ids that a host account or subordinate range has (every sandbox disk is owned by them)", async () => {
    const withAccount = join(dir, "layer.passwd");
    writeFileSync(
      withAccount,
      `root:x:0:0:root:/root:/bin/bash\nlayer:x:${DEFAULT_LAYER_ID_BASE + 5}:100::/:/bin/false\n`,
    );
    const withSubgid = join(dir, "layer.subgid");
    writeFileSync(withSubgid, `bob:${DEFAULT_LAYER_ID_BASE + 60_000}:10000\n`);
    for (const file of [withAccount, withSubgid]) {
      const problems = await sandboxRangeProblems({ start: 2 ** 31, count: 4 * ID_BLOCK }, DEFAULT_LAYER_ID_BASE, [
        file,
      ]);
      expect(problems.join(), file).toContain(`the layer id block ${DEFAULT_LAYER_ID_BASE}-`);
      expect(problems.join(), file).toContain(file);
    }
  });

  it("by default: 1,024 blocks above 2^31 picked by the data dir, ending below the last id", () => {
    for (const instance of ["000000", "ffffff", "a1b2c3", "7fffff"]) {
      const range = defaultSandboxRange(instance);
      expect(range.count).toBe(1024 * ID_BLOCK);
      expect(range.start).toBeGreaterThanOrEqual(2 ** 31);
      expect(range.start % ID_BLOCK).toBe(0);
      expect(range.start + range.count - 1).toBeLessThanOrEqual(MAX_HOST_ID);
    }
    expect(defaultSandboxRange("000001")).not.toEqual(defaultSandboxRange("000002"));
    // Every slot a runtime may move on to (id-range-claim.ts) fits below the last id, apart.
    for (let slot = 0; slot < DEFAULT_RANGE_SLOTS; slot++) {
      const range = defaultSandboxRangeAt(slot);
      expect(range.start + range.count - 1).toBeLessThanOrEqual(MAX_HOST_ID);
      if (slot > 0) expect(range.start).toBe(defaultSandboxRangeAt(slot - 1).start + range.count);
    }
  });

  it("gives each live sandbox its own block and reuses freed ones last", () => {
    const start = 2 ** 31;
    const blocks = new IdBlockAllocator({ start, count: 3 * ID_BLOCK });
    const [a, b, c] = [blocks.allocate(), blocks.allocate(), blocks.allocate()];
    expect([a, b, c]).toEqual([start, start + ID_BLOCK, start + 2 * ID_BLOCK]);
    expect(() => blocks.allocate()).toThrow(/all 3 sandbox id blocks are in use/);
    blocks.release(b);
    expect(blocks.allocate()).toBe(b);
    blocks.release(a);
    blocks.release(c);
    expect(blocks.allocate()).toBe(c);
    expect(blocks.allocate()).toBe(a);
    expect(() => new IdBlockAllocator({ start, count: 1000 })).toThrow(/whole number of blocks/);
  });
});
