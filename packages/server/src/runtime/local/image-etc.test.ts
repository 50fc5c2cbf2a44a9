// Where an image's /etc leads, read in its layers as the real image store unpacks them
// (whiteouts, opaque dirs, canonical owners) and as overlayfs will show them; hostile chains
// are refused with a sentence, and nothing of the host is ever looked at.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OciImageStore } from "../../images/index.js";
import { imageStoreAvailable } from "../../images/test-support/available.js";
import type { TarEntry } from "../../images/test-support/tar-layers.js";
import { type EtcResolutionWork, type ImageEtc, resolveImageEtc } from "./image-etc.js";
import { imageLayerDirs } from "./sandbox-root.js";
import { importTestImage } from "./test-support/image-roots.js";

const available = await imageStoreAvailable("image /etc resolution tests");

const dir = (name: string, extra: Partial<TarEntry> = {}): TarEntry => ({
  name,
  type: "directory",
  mode: 0o755,
  ...extra,
});
const link = (name: string, linkname: string): TarEntry => ({ name, type: "symlink", linkname });
const file = (name: string, content = "x\n"): TarEntry => ({ name, content });

describe.runIf(available)("an image's /etc, resolved within its layers", () => {
  const work = mkdtempSync(join(tmpdir(), "sbx-image-etc-"));
  let store: OciImageStore;
  let base: number;
  beforeAll(async () => {
    store = await OciImageStore.open({ dir: join(work, "store") });
    base = store.layerIdBase;
  });
  afterAll(() => {
    store?.close();
    rmSync(work, { recursive: true, force: true });
  });

  /** Where /etc leads in an image of `layers` (bottom first). */
  const etcOf = async (...layers: TarEntry[][]): Promise<ImageEtc> => {
    const image = await importTestImage(store, work, { layers });
    return resolveImageEtc(imageLayerDirs(image, store));
  };
  const root = (mode = 0o755) => ({ uid: base, gid: base, mode });
  const names = (etc: ImageEtc) => (etc.kind === "link" ? etc.target.map((d) => d.name).join("/") : etc.kind);

  it("a directory, none, or something else than a symlink: the shared layer's /etc covers it", async () => {
    expect(await etcOf([dir("etc/"), file("etc/passwd")])).toEqual({ kind: "dir" });
    expect(await etcOf([file("bin/x")])).toEqual({ kind: "dir" });
    expect(await etcOf([file("etc", "a file\n")])).toEqual({ kind: "dir" });
    // The topmost entry decides: a directory over a symlink, and a symlink over a directory.
    expect(await etcOf([link("etc", "usr/etc"), dir("usr/etc/")], [dir("etc/")])).toEqual({ kind: "dir" });
    expect(names(await etcOf([dir("etc/"), dir("usr/etc/")], [link("etc", "usr/etc")]))).toBe("usr/etc");
  });

  it("a symlink, relative or absolute, maybe through others: the directory path it ends at, with the image's owners", async () => {
    const usrEtc = [dir("usr/"), dir("usr/etc/", { mode: 0o750, uid: 0, gid: 50 }), file("usr/etc/passwd")];
    expect(await etcOf([link("etc", "usr/etc"), ...usrEtc])).toEqual({
      kind: "link",
      target: [
        { name: "usr", owner: root() },
        { name: "etc", owner: { uid: base, gid: base + 50, mode: 0o750 } },
      ],
    });
    expect(names(await etcOf([link("etc", "/usr/etc"), ...usrEtc]))).toBe("usr/etc");
    expect(names(await etcOf([link("etc", "./usr//etc/."), ...usrEtc]))).toBe("usr/etc");
    // etc -> config -> /usr/share/conf, usr/share -> lib/share (relative to /usr), and a ".."
    const chain = await etcOf([
      link("etc", "config"),
      link("config", "/usr/share/../share/conf"),
      dir("usr/"),
      link("usr/share", "lib/share"),
      dir("usr/lib/share/conf/", { mode: 0o700 }),
    ]);
    expect(chain).toEqual({
      kind: "link",
      target: [
        { name: "usr", owner: root() },
        { name: "lib", owner: root() },
        { name: "share", owner: root() },
        { name: "conf", owner: root(0o700) },
      ],
    });
  });

  it("directories the image does not have are made, as Docker makes a missing mount point", async () => {
    expect(await etcOf([link("etc", "/opt/conf"), file("bin/x")])).toEqual({
      kind: "link",
      target: [{ name: "opt" }, { name: "conf" }],
    });
    // (Even a path that names the host's: it is the image's, made in the sandbox's root.)
    expect(names(await etcOf([link("etc", "/oldroot/tmp/x")]))).toBe("oldroot/tmp/x");
  });

  it("reads the layers as overlayfs shows them: whiteouts, opaque dirs, and directories merged down to a non-directory", async () => {
    // A lower symlink hidden by an opaque /usr above: /usr/conf is missing, not followed.
    const opaque = await etcOf(
      [link("etc", "usr/conf"), dir("usr/"), link("usr/conf", "/elsewhere"), dir("elsewhere/")],
      [dir("usr/"), file("usr/.wh..wh..opq", ""), file("usr/other")],
    );
    expect(opaque).toEqual({ kind: "link", target: [{ name: "usr", owner: root() }, { name: "conf" }] });
    // (Names that getfattr would quote are read one by one.)
    expect(
      await etcOf(
        [link("etc", "conf dir/ünï\n/x"), dir("conf dir/ünï\n/"), link("conf dir/ünï\n/x", "/elsewhere")],
        [dir("conf dir/ünï\n/"), file("conf dir/ünï\n/.wh..wh..opq", "")],
        [dir("conf dir/ünï\n/")],
      ),
    ).toEqual({
      kind: "link",
      target: [{ name: "conf dir", owner: root() }, { name: "ünï\n", owner: root() }, { name: "x" }],
    });
    // Removed by a whiteout: missing too.
    expect(
      await etcOf([link("etc", "usr/conf"), dir("usr/"), link("usr/conf", "/elsewhere")], [file("usr/.wh.conf", "")]),
    ).toEqual({ kind: "link", target: [{ name: "usr", owner: root() }, { name: "conf" }] });
    // Not opaque: the lower layer's entry shows through the upper /usr (owner: the upper copy's).
    expect(
      await etcOf([link("etc", "usr/lib/conf"), dir("usr/"), dir("usr/lib/conf/")], [dir("usr/", { mode: 0o711 })]),
    ).toEqual({
      kind: "link",
      target: [
        { name: "usr", owner: root(0o711) },
        { name: "lib", owner: root() },
        { name: "conf", owner: root() },
      ],
    });
    // A directory over a lower symlink of that name hides it (and everything below).
    expect(
      names(
        await etcOf([link("etc", "usr/conf"), link("usr", "/elsewhere"), dir("elsewhere/conf/")], [dir("usr/conf/")]),
      ),
    ).toBe("usr/conf");
    // An opaque dir below a non-opaque one still cuts what is below it.
    expect(
      await etcOf(
        [link("etc", "usr/conf"), dir("usr/"), link("usr/conf", "/elsewhere")],
        [dir("usr/"), file("usr/.wh..wh..opq", "")],
        [dir("usr/"), file("usr/top")],
      ),
    ).toEqual({ kind: "link", target: [{ name: "usr", owner: root() }, { name: "conf" }] });
  });

  it("refuses a chain that loops, leaves the root, ends at the root or a file, or goes through a mount point", async () => {
    const refused = async (layers: TarEntry[], problem: RegExp) => {
      const etc = await etcOf(layers);
      expect(etc.kind, JSON.stringify(etc)).toBe("refused");
      expect(etc.kind === "refused" ? etc.problem : "").toMatch(problem);
    };
    await refused([link("etc", "a"), link("a", "b"), link("b", "/etc")], /loops/);
    await refused([link("etc", "etc")], /loops/);
    await refused([link("etc", "../../.."), dir("usr/etc/")], /leads out of the image's root/);
    await refused([link("etc", "usr/../../etc"), dir("usr/etc/")], /leads out of the image's root/);
    await refused([link("etc", "/usr/x"), dir("usr/"), link("usr/x", "../../../host-etc")], /leads out/);
    await refused([link("etc", "/"), dir("usr/")], /symlink to the image's root/);
    await refused([link("etc", "usr/.."), dir("usr/")], /symlink to the image's root/);
    await refused(
      [link("etc", "bin/busybox"), file("bin/busybox")],
      /leads to "\/bin\/busybox", which is not a directory/,
    );
    await refused([link("etc", "/usr/etc/x"), file("usr/etc")], /leads to "\/usr\/etc", which is not a directory/);
    await refused([link("etc", "/tmp/etc"), dir("tmp/etc/")], /leads into \/tmp, which the sandbox mounts over/);
    await refused([link("etc", "/proc/self/root/etc")], /leads into \/proc/);
    await refused([link("etc", "usr/../dev/x"), dir("usr/")], /leads into \/dev/);
    await refused([link("etc", ".sbx")], /leads into \/.sbx/);
    await refused(
      [link("etc", "missing/../usr/etc"), dir("usr/etc/")],
      /climbs out of "\/missing", which the image does not have/,
    );
    await refused([link("etc", "a/".repeat(300))], /takes over 256 steps/);
    await refused([link("etc", "x".repeat(256))], /too long/);
  });

  // Hostile layers made as files (the store's dirs are read as they are): what would make the
  // server work for long is refused after a bounded amount of work, counted, never timed.
  let raw = 0;
  /** `count` empty layer dirs (top first), made by `make(dir, index)`. */
  const rawLayers = (count: number, make: (dir: string, index: number) => void = () => {}) => {
    const layers = Array.from({ length: count }, (_, i) => join(work, `raw-${++raw}`, `layer-${i}`));
    layers.forEach((dir, i) => {
      mkdirSync(dir, { recursive: true });
      make(dir, i);
    });
    return layers;
  };
  const resolved = async (layers: string[]) => {
    const work: EtcResolutionWork = { parts: 0, lstats: 0, opaqueReads: 0, processes: 0 };
    return { etc: await resolveImageEtc(layers, work), work };
  };

  it("refuses a chain of empty components, dots and long targets after little work", async () => {
    // 4 KiB targets of slashes around one name, 40 times over: each a component, a lookup.
    const slashes = "/".repeat(2045);
    const [looping] = rawLayers(1, (dir) => {
      symlinkSync(`${slashes}l${slashes}`, join(dir, "etc"));
      symlinkSync(`.${slashes.slice(8)}./././l/.${slashes}`, join(dir, "l")); // (4,095 bytes)
    });
    const loop = await resolved([looping as string]);
    expect(loop.etc).toEqual({ kind: "refused", problem: "is a symlink that loops (over 40 symlinks)" });
    expect(loop.work).toEqual({ parts: 40, lstats: 41, opaqueReads: 0, processes: 0 });
    // A target of too many components is refused before any is walked; and the limit counts
    // every symlink's (x: 200 components that get nowhere, twice).
    const [many] = rawLayers(1, (dir) => {
      symlinkSync("a/".repeat(2000), join(dir, "etc"));
    });
    expect(await resolved([many as string])).toEqual({
      etc: { kind: "refused", problem: "is a symlink that takes over 256 steps to resolve" },
      work: { parts: 2000, lstats: 1, opaqueReads: 0, processes: 0 },
    });
    const [twice] = rawLayers(1, (dir) => {
      symlinkSync("x/x", join(dir, "etc"));
      symlinkSync("d/../".repeat(100), join(dir, "x"));
      mkdirSync(join(dir, "d"));
    });
    const both = await resolved([twice as string]);
    expect(both.etc).toEqual({ kind: "refused", problem: "is a symlink that takes over 256 steps to resolve" });
    expect(both.work.parts).toBe(402);
  });

  it("reads opaque marks a step at a time in one process, names that need quoting too, and none for an /etc that is a directory", async () => {
    // Sixty layers with "x y/a\\b\n" (quoted by getfattr), opaque in layer 30: what is below it there does not show.
    const name = "a\\b\n";
    const layers = rawLayers(60, (dir, i) => {
      mkdirSync(join(dir, "x y", name), { recursive: true });
      mkdirSync(join(dir, "etc"));
      if (i === 0) symlinkSync(`x y/${name}/conf`, join(dir, "etc.link"));
      if (i === 50) symlinkSync("/elsewhere", join(dir, "x y", name, "conf"));
    });
    execFileSync("setfattr", ["-h", "-n", "user.overlay.opaque", "-v", "y", join(layers[30] as string, "x y", name)]);
    // /etc a directory in every layer: nothing merged, nothing read but its topmost copy.
    expect(await resolved(layers)).toEqual({
      etc: { kind: "dir" },
      work: { parts: 0, lstats: 1, opaqueReads: 0, processes: 0 },
    });
    for (const layer of layers) rmSync(join(layer, "etc"), { recursive: true });
    symlinkSync(`x y/${name}/conf`, join(layers[0] as string, "etc"));
    const { etc, work: spent } = await resolved(layers);
    expect(etc).toEqual({
      kind: "link",
      target: [
        { name: "x y", owner: { uid: 0, gid: 0, mode: 0o755 } },
        { name, owner: { uid: 0, gid: 0, mode: 0o755 } },
        { name: "conf" },
      ],
    });
    // Two steps read marks (59 copies each), one process each; "conf" is looked up down to the opaque copy.
    expect(spent).toEqual({ parts: 3, lstats: 1 + 60 + 60 + 31, opaqueReads: 59 * 2, processes: 2 });
    // Without the mark, the lower symlink shows.
    execFileSync("setfattr", ["-h", "-x", "user.overlay.opaque", join(layers[30] as string, "x y", name)]);
    expect((await resolved(layers)).etc).toMatchObject({ kind: "link", target: [{ name: "elsewhere" }] });
  });

  it("refuses a chain through many layers' copies of a directory after a bounded number of reads", async () => {
    // Every layer of the most an image may have with the same deep directory, a name getfattr
    // quotes: once a process per copy per step (4,096 of them, half a minute), now one per step.
    const deep = Array(5).fill("x y").join("/");
    const layers = rawLayers(499, (dir, i) => {
      mkdirSync(join(dir, deep), { recursive: true });
      if (i === 0) symlinkSync(deep, join(dir, "etc"));
    });
    const { etc, work: spent } = await resolved(layers);
    expect(etc).toEqual({
      kind: "refused",
      problem: "is a symlink that takes over 2048 reads of its layers to resolve",
    });
    expect(spent.processes).toBe(4);
    expect(spent.opaqueReads).toBe(498 * 5);
  });

  it("refuses what it cannot read, without the host's paths: a path too long for the host, a broken layer", async () => {
    const segment = "a".repeat(250);
    const [long] = rawLayers(1, (dir) => {
      mkdirSync(join(dir, ...Array(16).fill(segment)), { recursive: true });
      symlinkSync(Array(16).fill(segment).join("/"), join(dir, "p"));
      symlinkSync(`p/${"b".repeat(255)}`, join(dir, "etc"));
    });
    expect((await resolved([long as string])).etc).toEqual({
      kind: "refused",
      problem: "is a symlink that leads to a path too long",
    });
    // A layer dir that is a file (not the image's doing): refused for now, the error's code alone.
    const [top] = rawLayers(1, (dir) => symlinkSync("usr/etc", join(dir, "etc")));
    const broken = join(work, `raw-${++raw}`);
    writeFileSync(broken, "");
    expect((await resolved([top as string, broken])).etc).toEqual({
      kind: "refused",
      problem: "could not be read in the image's layers (ENOTDIR)",
      transient: true,
    });
  });
});
