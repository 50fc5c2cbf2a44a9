// Where an image's /etc leads, read in its layers as the real image store unpacks them
// (whiteouts, opaque dirs, canonical owners) and as overlayfs will show them; hostile chains
// are refused with a sentence, and nothing of the host is ever looked at.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OciImageStore } from "../../images/index.js";
import { imageStoreAvailable } from "../../images/test-support/available.js";
import type { TarEntry } from "../../images/test-support/tar-layers.js";
import { type ImageEtc, resolveImageEtc } from "./image-etc.js";
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
});
