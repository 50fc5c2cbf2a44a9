/**
 * The layer unpacker against crafted tar layers (each attack in the list), as root on
 * the real file system, and a real overlay mount of unpacked layers with whiteouts.
 */
import { execFileSync } from "node:child_process";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { unpackLayer } from "./layer-unpacker.js";
import { ImageStoreError } from "./store-errors.js";
import { imageStoreAvailable } from "./test-support/available.js";
import { chunksOf, rawTarFile, type TarEntry, tarOf } from "./test-support/tar-layers.js";

const ID_BASE = 1_900_000_000;
const available = await imageStoreAvailable("layer unpacker tests");

describe.runIf(available)("layer unpacker", () => {
  let work: string;
  let outside: string;
  let count = 0;

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), "sbx-unpack-"));
    outside = join(work, "outside");
    mkdirSync(outside);
    writeFileSync(join(outside, "precious"), "untouched");
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  /** Unpacks `entries` into a fresh layer dir; returns it (or the error, with `fails`). */
  async function unpack(entries: readonly TarEntry[]) {
    const n = count++;
    const dir = join(work, `layer-${n}`);
    const scratch = join(work, `scratch-${n}`);
    mkdirSync(dir, { mode: 0o700 });
    mkdirSync(scratch, { mode: 0o700 });
    const bytes = await tarOf(entries);
    const result = await unpackLayer(chunksOf(bytes, 1000), {
      dir,
      scratchDir: scratch,
      idBase: ID_BASE,
      what: `layer ${n}`,
    });
    expect(readdirSync(scratch)).toEqual([]);
    return { dir, result };
  }
  async function fails(entries: readonly TarEntry[]): Promise<ImageStoreError> {
    try {
      await unpack(entries);
    } catch (error) {
      expect(error).toBeInstanceOf(ImageStoreError);
      return error as ImageStoreError;
    }
    throw new Error("expected the layer to be refused");
  }
  const outsideUntouched = () => {
    expect(readdirSync(outside)).toEqual(["precious"]);
    expect(readFileSync(join(outside, "precious"), "utf8")).toBe("untouched");
  };

  it("unpacks files, directories, symlinks and hard links with shifted owners, modes and times", async () => {
    const mtime = new Date(1_600_000_000_000);
    const { dir, result } = await unpack([
      { name: "etc/", type: "directory", mode: 0o755 },
      { name: "etc/passwd", content: "root:x:0:0::/root:/bin/sh\n", mode: 0o644, mtime },
      { name: "home/app/", type: "directory", mode: 0o700, uid: 1234, gid: 1234, mtime },
      { name: "home/app/data", content: "mine", uid: 1234, gid: 2345, mode: 0o600 },
      { name: "usr/bin/tool", content: "#!/bin/sh\n", mode: 0o4755 },
      { name: "usr/bin/alias", type: "link", linkname: "usr/bin/tool" },
      { name: "bin", type: "symlink", linkname: "usr/bin" },
      { name: "escape", type: "symlink", linkname: "/etc/shadow" },
    ]);
    const st = (p: string) => lstatSync(join(dir, p));
    expect(readFileSync(join(dir, "etc/passwd"), "utf8")).toContain("root:x");
    expect(st("etc/passwd").uid).toBe(ID_BASE);
    expect(st("etc/passwd").mtimeMs).toBe(mtime.getTime());
    expect(st("home/app").uid).toBe(ID_BASE + 1234);
    expect(st("home/app").mode & 0o7777).toBe(0o700);
    expect(st("home/app").mtimeMs).toBe(mtime.getTime());
    expect([st("home/app/data").uid, st("home/app/data").gid]).toEqual([ID_BASE + 1234, ID_BASE + 2345]);
    expect(st("usr/bin/tool").mode & 0o7777).toBe(0o4755);
    expect(st("usr/bin/tool").uid).toBe(ID_BASE);
    expect(st("usr/bin/alias").ino).toBe(st("usr/bin/tool").ino);
    expect(st("usr").uid).toBe(ID_BASE);
    expect(st("usr").mode & 0o7777).toBe(0o755);
    expect(readlinkSync(join(dir, "bin"))).toBe("usr/bin");
    expect(readlinkSync(join(dir, "escape"))).toBe("/etc/shadow");
    expect(st("escape").uid).toBe(ID_BASE);
    expect(result.sizeBytes).toBe(26 + 4 + 10 + 7 + 11);
  });

  it("refuses a name with a .. part, writing nothing outside", async () => {
    const error = await fails([{ name: "a/../../outside/precious", content: "owned" }]);
    expect(error.kind).toBe("invalid");
    expect(error.message).toContain('".." part');
    outsideUntouched();
  });

  it("keeps absolute names inside the layer", async () => {
    const { dir } = await unpack([{ name: `/${outside}/precious`, content: "inside" }]);
    outsideUntouched();
    expect(readFileSync(join(dir, outside, "precious"), "utf8")).toBe("inside");
  });

  it("refuses a file written through a symlink of the layer (a -> /etc, then a/passwd)", async () => {
    const error = await fails([
      { name: "a", type: "symlink", linkname: outside },
      { name: "a/precious", content: "owned" },
    ]);
    expect(error.kind).toBe("invalid");
    expect(error.message).toContain("which is a symlink");
    outsideUntouched();
  });

  it("refuses a directory made under a symlinked parent", async () => {
    const error = await fails([
      { name: "d", type: "symlink", linkname: outside },
      { name: "d/sub/", type: "directory" },
      { name: "d/sub/file", content: "owned" },
    ]);
    expect(error.kind).toBe("invalid");
    outsideUntouched();
  });

  it("refuses hard links out of the layer, to a missing file and to a symlink pointing out", async () => {
    for (const entries of [
      [{ name: "x", type: "link", linkname: "../outside/precious" }],
      [{ name: "x", type: "link", linkname: `${outside}/precious` }],
      [
        { name: "s", type: "symlink", linkname: `${outside}/precious` },
        { name: "x", type: "link", linkname: "s" },
      ],
    ] as TarEntry[][]) {
      const error = await fails(entries);
      expect(error.kind).toBe("invalid");
      expect(error.message).toMatch(/hard link|\.\. part/);
    }
    outsideUntouched();
    expect(lstatSync(join(outside, "precious")).nlink).toBe(1);
  });

  it("drops device nodes but the 0/0 whiteout, which becomes a whiteout", async () => {
    const { dir, result } = await unpack([
      { name: "dev/", type: "directory" },
      { name: "dev/sda", type: "block-device", devmajor: 8, devminor: 0 },
      { name: "dev/mem", type: "character-device", devmajor: 1, devminor: 1 },
      { name: "gone", type: "character-device", devmajor: 0, devminor: 0 },
    ]);
    expect(readdirSync(join(dir, "dev"))).toEqual([]);
    expect(result.droppedDevices).toBe(2);
    const gone = lstatSync(join(dir, "gone"));
    expect(gone.isCharacterDevice()).toBe(true);
    expect(gone.rdev).toBe(0);
  });

  it("keeps setuid bits but never a host owner (ids are shifted), and refuses ids of 65536 and over", async () => {
    const { dir } = await unpack([{ name: "su", content: "x", mode: 0o6755, uid: 0, gid: 0 }]);
    const st = lstatSync(join(dir, "su"));
    expect(st.mode & 0o7777).toBe(0o6755);
    expect([st.uid, st.gid]).toEqual([ID_BASE, ID_BASE]);
    const error = await fails([{ name: "big/id", content: "x", uid: 70_000 }]);
    expect(error.kind).toBe("invalid");
    expect(error.message).toContain('"big/id" is owned by uid 70000');
    const paxError = await fails([{ name: "pax", content: "x", pax: { gid: "4294967294" } }]);
    expect(paxError.message).toContain("gid 4294967294");
  });

  it("keeps names with newlines and non-UTF-8 bytes exactly, and refuses NUL and over-long names", async () => {
    const { dir } = await unpack([
      { name: "line\nbreak", content: "1" },
      { name: "x", content: "2", pax: { path: "pax\nname" } },
      { name: "caf\u00e9", content: "3" },
    ]);
    const names = readdirSync(dir, { encoding: "buffer" }).map((b) => b.toString("latin1"));
    expect(names.sort()).toEqual(["caf\xc3\xa9", "line\nbreak", "pax\nname"].sort());
    const rawDir = join(work, "raw-name");
    mkdirSync(rawDir);
    const latin1 = Buffer.from([0x63, 0x61, 0x66, 0xe9]); // "café" in Latin-1: not UTF-8
    await unpackLayer(chunksOf(rawTarFile(latin1, Buffer.from("4"))), {
      dir: rawDir,
      scratchDir: work,
      idBase: ID_BASE,
      what: "raw",
    });
    expect(readdirSync(rawDir, { encoding: "buffer" })).toEqual([latin1]);
    expect((await fails([{ name: "x", content: "", pax: { path: "a\0b" } }])).kind).toBe("invalid");
    const long = await fails([{ name: "x", content: "", pax: { path: `${"n".repeat(300)}` } }]);
    expect(long.message).toContain("over 255 bytes");
    const deep = await fails([{ name: "x", content: "", pax: { path: `${"d/".repeat(2100)}f` } }]);
    expect(deep.message).toContain("too long");
    const { dir: deepOk } = await unpack([{ name: "x", content: "deep", pax: { path: `${"d/".repeat(500)}f` } }]);
    expect(readFileSync(join(deepOk, `${"d/".repeat(500)}f`), "utf8")).toBe("deep");
  });

  it("lets a later entry win: file over file, file over directory, directory over file", async () => {
    const { dir } = await unpack([
      { name: "f", content: "first" },
      { name: "f", content: "second" },
      { name: "d/inner", content: "gone with d" },
      { name: "d", content: "now a file" },
      { name: "e", content: "was a file" },
      { name: "e/", type: "directory", mode: 0o711 },
      { name: "e/child", content: "in e" },
      { name: "k/", type: "directory", mode: 0o700 },
      { name: "k/keep", content: "kept" },
      { name: "k/", type: "directory", mode: 0o755 },
    ]);
    expect(readFileSync(join(dir, "f"), "utf8")).toBe("second");
    expect(readFileSync(join(dir, "d"), "utf8")).toBe("now a file");
    expect(lstatSync(join(dir, "e")).mode & 0o7777).toBe(0o711);
    expect(readFileSync(join(dir, "e/child"), "utf8")).toBe("in e");
    expect(readFileSync(join(dir, "k/keep"), "utf8")).toBe("kept");
    expect(lstatSync(join(dir, "k")).mode & 0o7777).toBe(0o755);
  });

  it("refuses a layer with more entries than the limit (the unpacker keeps a record of each)", async () => {
    const dir = join(work, "many");
    mkdirSync(dir);
    const bytes = await tarOf(Array.from({ length: 20 }, (_, i) => ({ name: `d${i}/`, type: "directory" as const })));
    const error = await unpackLayer(chunksOf(bytes), {
      dir,
      scratchDir: work,
      idBase: ID_BASE,
      what: "layer m",
      maxEntries: 10,
    }).catch((e: unknown) => e);
    expect((error as ImageStoreError).kind).toBe("quota");
    expect((error as ImageStoreError).message).toBe(
      "layer m has more than 10 entries, the store's limit for one layer",
    );
  });

  it("counts the directories an entry's name implies against the entry limit", async () => {
    // One entry, 40 directories made for it: the limit bounds what the unpacker makes and keeps.
    const dir = join(work, "implied");
    mkdirSync(dir);
    const bytes = await tarOf([{ name: `${"d/".repeat(40)}f`, content: "deep" }]);
    const error = await unpackLayer(chunksOf(bytes), {
      dir,
      scratchDir: work,
      idBase: ID_BASE,
      what: "layer i",
      maxEntries: 10,
    }).catch((e: unknown) => e);
    expect((error as ImageStoreError).kind).toBe("quota");
    expect((error as ImageStoreError).message).toContain("layer i has more than 10 entries");
  });

  it("bounds the bytes of names it keeps (long names by the thousand would exhaust the server's memory)", async () => {
    const dir = join(work, "long-names");
    mkdirSync(dir);
    const entries = Array.from({ length: 20 }, (_, i) => ({ name: `${String(i).padStart(3, "0")}${"n".repeat(200)}` }));
    const error = await unpackLayer(chunksOf(await tarOf(entries)), {
      dir,
      scratchDir: work,
      idBase: ID_BASE,
      what: "layer n",
      maxNameBytes: 2000,
    }).catch((e: unknown) => e);
    expect((error as ImageStoreError).kind).toBe("quota");
    expect((error as ImageStoreError).message).toBe(
      "layer n has names of more than 2000 bytes in all, the store's limit for one layer",
    );
  });

  it("lets the server's event loop run while it unpacks (deep names make every entry slow)", async () => {
    // Each entry makes a chain of directories 300 deep: far longer than the unpacker may keep the event loop,
    // from a stream that is all in memory (as a decompressor's buffered output is).
    const dir = join(work, "event-loop");
    mkdirSync(dir);
    const entries = Array.from({ length: 30 }, (_, i) => ({ name: `c${i}/${"d/".repeat(300)}f`, content: "x" }));
    const bytes = await tarOf(entries);
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 1);
    let ticksWhileUnpacking: number;
    try {
      await unpackLayer(chunksOf(bytes, bytes.length), {
        dir,
        scratchDir: work,
        idBase: ID_BASE,
        what: "layer e",
      });
      ticksWhileUnpacking = ticks;
    } finally {
      clearInterval(ticker);
    }
    expect(ticksWhileUnpacking).toBeGreaterThan(0);
    expect(readFileSync(join(dir, `c29/${"d/".repeat(300)}f`), "utf8")).toBe("x");
  });

  it("refuses a whiteout that names nothing (.wh. alone)", async () => {
    for (const name of [".wh.", "a/.wh."]) {
      const error = await fails([{ name, content: "" }]);
      expect(error.kind).toBe("invalid");
      expect(error.message).toContain("names nothing");
    }
  });

  it("refuses what is not a tar", async () => {
    const dir = join(work, "not-tar");
    mkdirSync(dir);
    const error = await unpackLayer(chunksOf(Buffer.alloc(2048, 7)), {
      dir,
      scratchDir: work,
      idBase: ID_BASE,
      what: "layer x",
    }).catch((e: unknown) => e);
    expect((error as ImageStoreError).kind).toBe("invalid");
  });

  it("makes whiteouts and opaque directories that a real overlay mount stacks as expected", async () => {
    const { dir: lower } = await unpack([
      { name: "etc/keep", content: "kept" },
      { name: "etc/remove-me", content: "removed" },
      { name: "opt/old/file", content: "old" },
      { name: "var/cache/a", content: "a" },
      { name: "swap", content: "was a file" },
      { name: "srv/data", content: "old data" },
    ]);
    const { dir: upper } = await unpack([
      { name: "etc/.wh.remove-me", content: "" },
      { name: "opt/old/.wh..wh..opq", content: "" },
      { name: "opt/old/new", content: "new" },
      { name: "var/.wh.cache", content: "" },
      { name: ".wh.swap", content: "" },
      { name: "swap/", type: "directory" },
      { name: "swap/inner", content: "now a dir" },
      { name: ".wh.srv", content: "" },
      { name: "srv/fresh", content: "fresh" },
    ]);
    const xattr = (path: string) =>
      execFileSync("getfattr", ["-h", "--only-values", "-n", "trusted.overlay.opaque", path], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "ignore"],
      });
    expect(xattr(join(upper, "opt/old"))).toBe("y");
    expect(lstatSync(join(upper, "etc/remove-me")).isCharacterDevice()).toBe(true);
    const mnt = join(work, "mnt");
    mkdirSync(mnt);
    execFileSync("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${upper}:${lower}`, mnt]);
    try {
      expect(readdirSync(join(mnt, "etc"))).toEqual(["keep"]);
      expect(readdirSync(join(mnt, "opt/old"))).toEqual(["new"]);
      expect(readdirSync(join(mnt, "var"))).toEqual([]);
      expect(readdirSync(join(mnt, "swap"))).toEqual(["inner"]);
      expect(readdirSync(join(mnt, "srv"))).toEqual(["fresh"]);
      expect(existsSync(join(mnt, "etc/remove-me"))).toBe(false);
    } finally {
      execFileSync("umount", [mnt]);
    }
  });
});
