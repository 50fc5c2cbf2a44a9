// The sandbox uid range: refused when it overlaps any id the host hands out, and allocated one
// live sandbox per uid, freed ids coming back last.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { MAX_SANDBOX_UID, UidAllocator, uidRangeProblems } from "./uid-range.js";

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
    expect((await check(MAX_SANDBOX_UID, 2)).join()).toContain("ends past");
  });

  it("gives each live sandbox its own uid and reuses freed ones last", () => {
    const uids = new UidAllocator({ start: 10, count: 3 });
    const [a, b, c] = [uids.allocate(), uids.allocate(), uids.allocate()];
    expect([a, b, c]).toEqual([10, 11, 12]);
    expect(() => uids.allocate()).toThrow(/all 3 sandbox uids are in use/);
    uids.release(b);
    expect(uids.allocate()).toBe(11);
    uids.release(a);
    uids.release(c);
    expect(uids.allocate()).toBe(12);
    expect(uids.allocate()).toBe(10);
  });
});
