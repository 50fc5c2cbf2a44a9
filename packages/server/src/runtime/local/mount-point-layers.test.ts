// The mount-point layers on top of image roots: the shared one, and one per path an image's
// /etc symlink leads to (content-addressed, shared, held by sandboxes, removed when the last
// lets go); and what the runtime sweeps at start. Files only (no sandbox): needs root (owners).
import { execFileSync } from "node:child_process";
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { etcLinkLayerOf, imageRootPartsName, MountPointLayers } from "./mount-point-layers.js";

const BASE = 1_900_000_000;
const asRoot = process.getuid?.() === 0;

/** `path`'s type, owner and mode, as `ls` would tell them. */
const shape = (path: string) => {
  const stats = lstatSync(path);
  const type = stats.isDirectory() ? "dir" : stats.isFile() ? "file" : "other";
  return `${type} ${stats.uid}:${stats.gid} ${(stats.mode & 0o7777).toString(8)}`;
};

/** Every path under `dir` (relative, sorted) with its shape. */
const tree = (dir: string): Record<string, string> => {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const name of readdirSync(join(dir, rel))) {
      const path = rel ? `${rel}/${name}` : name;
      out[path] = shape(join(dir, path));
      if (lstatSync(join(dir, path)).isDirectory()) walk(path);
    }
  };
  walk("");
  return out;
};

describe.runIf(asRoot)("mount-point layers", () => {
  const work = mkdtempSync(join(tmpdir(), "sbx-mount-points-"));
  afterAll(() => rmSync(work, { recursive: true, force: true }));
  let n = 0;
  const fresh = () => {
    const dir = join(work, `images-${++n}`);
    return { dir, layers: new MountPointLayers(dir, BASE) };
  };
  const usrEtc = {
    kind: "link" as const,
    target: [
      { name: "usr", owner: { uid: BASE, gid: BASE, mode: 0o755 } },
      { name: "etc", owner: { uid: BASE, gid: BASE + 50, mode: 0o750 } },
      { name: "conf.d" },
    ],
  };

  it("the shared layer: root's mount points, and an /etc with an empty resolv.conf that are the image's root's", async () => {
    const { dir, layers } = fresh();
    const parts = await layers.parts();
    expect(parts.mountPoints).toBe(join(dir, imageRootPartsName(BASE), "mount-points"));
    expect(tree(parts.mountPoints)).toEqual({
      ".sbx": "dir 0:0 755",
      proc: "dir 0:0 755",
      dev: "dir 0:0 755",
      tmp: "dir 0:0 755",
      etc: `dir ${BASE}:${BASE} 755`,
      "etc/resolv.conf": `file ${BASE}:${BASE} 644`,
    });
    expect(tree(parts.emptyLayer)).toEqual({ upper: `dir ${BASE}:${BASE} 755`, work: `dir ${BASE}:${BASE} 700` });
    const shared = await layers.hold({ kind: "dir" });
    expect(shared.path).toBe(parts.mountPoints);
    expect(shared.resolvConf).toBe("/etc/resolv.conf");
    shared.release();
    expect(existsSync(parts.mountPoints)).toBe(true);
  });

  it("an image whose /etc is a symlink: the path it leads to with the image's owners (no /etc), shared, removed after the last release", async () => {
    const { layers } = fresh();
    const [a, b] = await Promise.all([layers.hold(usrEtc), layers.hold(usrEtc)]);
    expect(a.path).toBe(b.path);
    expect(a.path.endsWith(`/etc-links/${etcLinkLayerOf(usrEtc.target).name}`)).toBe(true);
    expect(a.resolvConf).toBe("/usr/etc/conf.d/resolv.conf");
    expect(tree(a.path)).toEqual({
      ".sbx": "dir 0:0 755",
      proc: "dir 0:0 755",
      dev: "dir 0:0 755",
      tmp: "dir 0:0 755",
      usr: `dir ${BASE}:${BASE} 755`,
      "usr/etc": `dir ${BASE}:${BASE + 50} 750`,
      "usr/etc/conf.d": `dir ${BASE}:${BASE} 755`,
      "usr/etc/conf.d/resolv.conf": `file ${BASE}:${BASE} 644`,
    });
    // Another path, or other owners: another layer.
    const other = await layers.hold({ kind: "link", target: [{ name: "usr" }, { name: "etc" }, { name: "conf.d" }] });
    expect(other.path).not.toBe(a.path);
    a.release();
    a.release(); // (only the first counts)
    await layers.settled();
    expect(existsSync(b.path)).toBe(true);
    b.release();
    await layers.settled();
    expect(existsSync(b.path)).toBe(false);
    expect(existsSync(other.path)).toBe(true);
    // Held again right as it is being removed: made again once the removal is done.
    other.release();
    const again = await layers.hold({ kind: "link", target: [{ name: "usr" }, { name: "etc" }, { name: "conf.d" }] });
    expect(again.path).toBe(other.path);
    expect(existsSync(join(again.path, "usr/etc/conf.d/resolv.conf"))).toBe(true);
    again.release();
    await layers.settled();
    expect(readdirSync(join(again.path, ".."))).toEqual([]);
    // Names that are not plain path components, or a place the sandbox mounts over: never made.
    for (const target of [[{ name: ".." }], [{ name: "a/b" }], [{ name: "" }], [{ name: "tmp" }, { name: "x" }], []]) {
      await expect(layers.hold({ kind: "link", target }), JSON.stringify(target)).rejects.toThrow();
    }
    expect(readdirSync(join(again.path, ".."))).toEqual([]);
  });

  it("sweeps other versions, builds cut short and unheld layers; keeps what is held, its own builds, and what is not its own", async () => {
    const { dir, layers } = fresh();
    const held = await layers.hold(usrEtc);
    const parts = join(dir, imageRootPartsName(BASE));
    const links = join(parts, "etc-links");
    const outside = mkdtempSync(join(work, "outside-"));
    writeFileSync(join(outside, "keep"), "host\n");
    for (const path of [
      "image-root-v1-1",
      `${imageRootPartsName(BASE)}.building-999999999`,
      `${imageRootPartsName(BASE)}.building-${process.pid}`,
      "image-root-v2-77",
      "not-ours",
      `etc-links-x`,
    ]) {
      mkdirSync(join(dir, path), { recursive: true });
    }
    mkdirSync(join(links, "d".repeat(32)));
    mkdirSync(join(links, `${"e".repeat(32)}.building-999999999`));
    mkdirSync(join(links, `${"f".repeat(32)}.building-${process.pid}`));
    // Removals cut short (renamed aside, then cut): another process's go, this one's are under way.
    mkdirSync(join(links, `${"a".repeat(32)}.removing-999999999-1`));
    mkdirSync(join(links, `${"b".repeat(32)}.removing-${process.pid}-1`));
    mkdirSync(join(dir, "image-root-v1-1.removing-999999999-3"));
    mkdirSync(join(dir, `${imageRootPartsName(BASE)}.removing-${process.pid}-2`));
    writeFileSync(join(parts, "disk-1-x.img.building-999999999"), "");
    symlinkSync(outside, join(dir, "image-root-v9-9"));
    symlinkSync(outside, join(links, "0".repeat(32)));
    const removed = await layers.sweep();
    expect(removed.sort()).toEqual(
      [
        "image-root-v1-1",
        "image-root-v2-77",
        `${imageRootPartsName(BASE)}.building-999999999`,
        `${imageRootPartsName(BASE)}/disk-1-x.img.building-999999999`,
        `${imageRootPartsName(BASE)}/etc-links/${"d".repeat(32)}`,
        `${imageRootPartsName(BASE)}/etc-links/${"e".repeat(32)}.building-999999999`,
        `${imageRootPartsName(BASE)}/etc-links/${"a".repeat(32)}.removing-999999999-1`,
        "image-root-v1-1.removing-999999999-3",
      ].sort(),
    );
    expect(readdirSync(dir).sort()).toEqual(
      [
        imageRootPartsName(BASE),
        `${imageRootPartsName(BASE)}.building-${process.pid}`,
        `${imageRootPartsName(BASE)}.removing-${process.pid}-2`,
        "etc-links-x",
        "image-root-v9-9",
        "not-ours",
      ].sort(),
    );
    expect(readdirSync(links).sort()).toEqual(
      [
        "0".repeat(32),
        `${"f".repeat(32)}.building-${process.pid}`,
        `${"b".repeat(32)}.removing-${process.pid}-1`,
        held.path.split("/").at(-1),
      ].sort(),
    );
    expect(readdirSync(outside)).toEqual(["keep"]);
    held.release();
  });

  it("uses a layer found in place only if it is whole (a run cut short, an older version), else makes it again", async () => {
    const { dir, layers } = fresh();
    const held = await layers.hold(usrEtc);
    const whole = tree(held.path);
    const parts = await layers.parts();
    const shared = tree(parts.mountPoints);
    // Left by a removal cut short (children first): no resolv.conf, or a mount point gone.
    unlinkSync(join(held.path, "usr/etc/conf.d/resolv.conf"));
    rmSync(join(parts.mountPoints, "tmp"), { recursive: true });
    const next = new MountPointLayers(dir, BASE);
    const again = await next.hold(usrEtc);
    expect(again.path).toBe(held.path);
    expect(tree(again.path)).toEqual(whole);
    expect(tree((await next.parts()).mountPoints)).toEqual(shared);
    // A symlink where a directory of the layer should be: made again too (never followed).
    const outside = mkdtempSync(join(work, "outside-"));
    rmSync(join(again.path, "dev"), { recursive: true });
    symlinkSync(outside, join(again.path, "dev"));
    const third = await new MountPointLayers(dir, BASE).hold(usrEtc);
    expect(tree(third.path)).toEqual(whole);
    expect(readdirSync(outside)).toEqual([]);
    // (What each found not whole was renamed aside, then removed.)
    expect(readdirSync(join(held.path, "..")).filter((name) => name.includes(".removing-"))).toEqual([]);
  });

  it("a removal cut short leaves nothing under the layer's name: the next hold makes it whole", async () => {
    const { layers } = fresh();
    const held = await layers.hold(usrEtc);
    const whole = tree(held.path);
    // A mount inside the layer stops its removal halfway (rm cannot remove a mount point).
    const blocker = mkdtempSync(join(work, "blocker-"));
    execFileSync("mount", ["--bind", blocker, join(held.path, "tmp")]);
    try {
      held.release();
      await layers.settled();
      const left = readdirSync(join(held.path, ".."));
      expect(left).not.toContain(held.path.split("/").at(-1));
      expect(left.filter((name) => name.includes(".removing-"))).toHaveLength(1);
      const again = await layers.hold(usrEtc);
      expect(tree(again.path)).toEqual(whole);
      again.release();
      await layers.settled();
    } finally {
      for (const name of readdirSync(join(held.path, ".."))) {
        try {
          execFileSync("umount", [join(held.path, "..", name, "tmp")], { stdio: "ignore" });
        } catch {} // (not the one mounted on)
      }
    }
  });

  it("a hold made while the runtime sweeps gets a whole layer, whenever it comes", async () => {
    const { dir } = fresh();
    const left = await new MountPointLayers(dir, BASE).hold(usrEtc); // (an earlier run's, never released)
    const whole = tree(left.path);
    for (let ticks = 0; ticks < 40; ticks++) {
      const layers = new MountPointLayers(dir, BASE);
      const sweep = layers.sweep();
      for (let i = 0; i < ticks; i++) await new Promise((resolve) => setImmediate(resolve));
      const held = await layers.hold(usrEtc);
      await sweep;
      expect(tree(held.path), `a hold after ${ticks} ticks`).toEqual(whole);
      // (Left in place for the next round: an earlier run's layer, no sandbox of this one holds it.)
    }
  });
});
