// mount-root, the agent binary's host-side job: an overlay of detached idmapped clones, owners
// shown shifted into the sandbox's block, nothing idmapped attached to any path, the upper kept
// canonical on disk; a stack too long for mount(2)'s page of options goes through fsconfig;
// and it refuses to run inside a user namespace.
import { execFileSync, spawnSync } from "node:child_process";
import { chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { realServerAvailable } from "../../test-support.js";
import { installAgent } from "./agent-binary.js";
import { mountRoot } from "./root-mount.js";

const available = await realServerAvailable("mount-root tests");
const L = 1_900_000_000;
const B = 2 ** 31 + 9 * 65_536;

describe.runIf(available)("mount-root", () => {
  const work = mkdtempSync(join(tmpdir(), "sbx-mount-root-"));
  let helper: string;
  const target = join(work, "root");
  const disk = join(work, "disk");
  beforeAll(async () => {
    helper = await installAgent(work);
    mkdirSync(target);
  });
  afterAll(() => {
    spawnSync("umount", [target]);
    rmSync(work, { recursive: true, force: true });
  });

  const layer = (name: string, files: Record<string, number>) => {
    const dir = join(work, name);
    mkdirSync(dir, { recursive: true });
    chownSync(dir, L, L);
    for (const [file, owner] of Object.entries(files)) {
      writeFileSync(join(dir, file), `${name}/${file}\n`);
      chownSync(join(dir, file), L + owner, L + owner);
    }
    return dir;
  };
  const freshDisk = () => {
    rmSync(disk, { recursive: true, force: true });
    for (const d of ["upper", "work"]) {
      mkdirSync(join(disk, d), { recursive: true });
      chownSync(join(disk, d), L, L);
    }
  };
  const idmappedMounts = () =>
    readdirSync("/proc")
      .filter((entry) => /^\d+$/.test(entry))
      .reduce((n, pid) => {
        try {
          return n + (readFileSync(`/proc/${pid}/mountinfo`, "utf8").match(/idmapped/g)?.length ?? 0);
        } catch {
          return n;
        }
      }, 0);

  it("shows the layers' owners in the sandbox's block, keeps the upper canonical, attaches nothing idmapped", async () => {
    freshDisk();
    const top = layer("top", { "app-file": 1234 });
    const bottom = layer("bottom", { "root-file": 0, "app-file": 0 });
    await mountRoot({
      helper,
      target,
      disk,
      layerIdBase: L,
      base: B,
      lowers: [
        { path: top, idmapped: true },
        { path: bottom, idmapped: true },
      ],
    });
    try {
      expect(readFileSync(join(target, "app-file"), "utf8")).toBe("top/app-file\n");
      expect(statSync(join(target, "app-file")).uid).toBe(B + 1234);
      expect(statSync(join(target, "root-file")).uid).toBe(B);
      const mount = readFileSync("/proc/self/mountinfo", "utf8")
        .split("\n")
        .find((line) => line.split(" ")[4] === target);
      expect(mount).toMatch(/ - overlay overlay .*lowerdir=\/proc\/self\/fd\/\d+:\/proc\/self\/fd\/\d+/);
      expect(mount).toMatch(/userxattr/);
      expect(mount?.split(" ")[5]).toMatch(/nosuid,nodev/);
      expect(idmappedMounts()).toBe(0);
      // A write as the sandbox's user 1234 (a host process of its id) lands canonical on disk.
      // (given a way in: a cwd root entered first, as the sandbox's own root is reached)
      const write = spawnSync(
        "setpriv",
        [`--reuid=${B + 1234}`, `--regid=${B + 1234}`, "--clear-groups", "sh", "-c", "echo x > app-file"],
        { cwd: target },
      );
      expect(write.status, String(write.stderr)).toBe(0);
      expect(statSync(join(disk, "upper", "app-file")).uid).toBe(L + 1234);
    } finally {
      execFileSync("umount", [target]);
    }
  });

  it("stacks more lower dirs than mount(2)'s page of options holds (fsconfig lowerdir+)", async () => {
    freshDisk();
    const lowers = Array.from({ length: 300 }, (_, i) => ({
      path: layer(`many-${i}`, { [`f${i}`]: i }),
      idmapped: true,
    }));
    await mountRoot({ helper, target, disk, layerIdBase: L, base: B, lowers });
    try {
      expect(readdirSync(target).length).toBe(300);
      expect(statSync(join(target, "f299")).uid).toBe(B + 299);
    } finally {
      execFileSync("umount", [target]);
    }
  });

  it("refuses a dir given twice, a symlink for a path, and running inside a user namespace", async () => {
    freshDisk();
    const one = layer("once", {});
    const twice = mountRoot({
      helper,
      target,
      disk,
      layerIdBase: L,
      base: B,
      lowers: [
        { path: one, idmapped: true },
        { path: one, idmapped: true },
      ],
    });
    await expect(twice).rejects.toThrow(/given twice/);
    execFileSync("ln", ["-s", one, join(work, "link")]);
    const viaLink = mountRoot({
      helper,
      target,
      disk,
      layerIdBase: L,
      base: B,
      lowers: [{ path: join(work, "link"), idmapped: true }],
    });
    await expect(viaLink).rejects.toThrow(/link is not a directory/);
    // The disk too: its clone becomes the writable upper.
    execFileSync("ln", ["-s", disk, join(work, "disk-link")]);
    const diskViaLink = mountRoot({
      helper,
      target,
      disk: join(work, "disk-link"),
      layerIdBase: L,
      base: B,
      lowers: [{ path: one, idmapped: true }],
    });
    await expect(diskViaLink).rejects.toThrow(/disk-link is not a directory/);
    const inside = spawnSync("unshare", ["--user", "--map-root-user", helper, "mount-root", "--target", target]);
    expect(String(inside.stderr)).toMatch(/runs on the host only/);
    expect(inside.status).not.toBe(0);
  });
});
