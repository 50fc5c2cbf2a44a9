// Host-side isolation of the local runtime: what a sandbox leaves on the host (its layer, its
// uid, its mounts) must give no host account and no other sandbox anything, and what the host
// has (its configuration under /usr) must not show inside. Real server, real bubblewrap.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { type Sandbox, SandboxClient } from "@sbx/node";
import { BLOCKED_NETWORK, RuntimeFsError, type RuntimeSandbox, type SandboxRuntime } from "@sbx/server-kit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { defaultImageName } from "./runtime/local/image.js";
import { createLocalRuntime } from "./runtime/local/index.js";
import { DEFAULT_LAYER_ID_BASE } from "./runtime/local/uid-range.js";
import { realServerAvailable, startTestServer } from "./test-support.js";

const available = await realServerAvailable();

const NOBODY = 65_534;
const MiB = 1024 * 1024;

/**
 * `argv` run as host uid/gid `id` (no groups, no capabilities) from `cwd`, which root enters
 * first; a shell running as `id` finds and executes the program (setpriv's own exec does not
 * check the path with the new credentials).
 */
function runAs(id: number, cwd: string, argv: string[]): { out: string; code: number | null } {
  const r = spawnSync(
    "setpriv",
    [`--reuid=${id}`, `--regid=${id}`, "--clear-groups", "--inh-caps=-all", "sh", "-c", 'exec "$@"', "sh", ...argv],
    { cwd, encoding: "utf8" },
  );
  return { out: `${r.stdout}${r.stderr}`, code: r.status };
}

/** The host's mounts: mount point, per-mount options, filesystem type and source. */
function hostMounts(): { mountPoint: string; options: string[]; fsType: string }[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .trim()
    .split("\n")
    .map((line) => {
      const [before = "", after = ""] = line.split(" - ");
      const fields = before.split(" ");
      return {
        mountPoint: (fields[4] ?? "").replace(/\\040/g, " "),
        options: (fields[5] ?? "").split(","),
        fsType: after.split(" ")[0] ?? "",
      };
    });
}

const passwdUids = () =>
  new Set(
    readFileSync("/etc/passwd", "utf8")
      .split("\n")
      .filter(Boolean)
      .map((line) => Number(line.split(":")[2])),
  );

if (available) {
  describe("host-side isolation (real server)", () => {
    let server: Awaited<ReturnType<typeof startTestServer>>;
    let client: SandboxClient;
    beforeAll(async () => {
      server = await startTestServer();
      client = new SandboxClient({ endpoint: server.url, token: server.token });
    });
    afterAll(async () => {
      await client.close();
      await server.close();
      server.removeData();
    });

    const run = async (sb: Sandbox, argv: string[]) => {
      const p = await sb.exec(argv, { stderr: "stdout" });
      const [out, code] = await Promise.all([p.stdout.readText(), p.wait()]);
      return { out, code };
    };
    /** The sandbox's host uid, as its user namespace maps root. */
    const hostUid = async (sb: Sandbox) =>
      Number((await run(sb, ["cat", "/proc/self/uid_map"])).out.trim().split(/\s+/)[1]);
    /** The sandbox's root on the host: the overlay mount under the data dir holding `/work/<marker>`. */
    const hostRoot = async (sb: Sandbox) => {
      const marker = `marker-${sb.id}`;
      expect((await run(sb, ["touch", `/work/${marker}`])).code).toBe(0);
      const root = hostMounts().find(
        (m) =>
          m.fsType === "overlay" &&
          m.mountPoint.startsWith(server.dataDir) &&
          existsQuietly(join(m.mountPoint, "work", marker)),
      );
      if (!root) throw new Error(`no overlay mount of sandbox ${sb.id} under ${server.dataDir}`);
      return root.mountPoint;
    };

    it("refuses disk sizes and cpu limits the runtime cannot honour with InvalidError, and stays up", async () => {
      for (const options of [{ diskMiB: 8 }, { diskMiB: 2_000_000 }, { cpu: 0.0001 }]) {
        await expect(client.sandboxes.create(options)).rejects.toMatchObject({ code: "invalid" });
      }
      await using sb = await client.sandboxes.create({ diskMiB: 32 });
      expect((await run(sb, ["sh", "-c", "df -m /work | tail -1"])).out).toMatch(/\s(2\d|3[0-2])\s/);
    });

    it("a setuid file planted in a sandbox gives no host account the sandbox's uid", async () => {
      await using sb = await client.sandboxes.create();
      const planted = await run(sb, [
        "sh",
        "-c",
        "cp /usr/bin/id /work/suid-id && chmod 6755 /work/suid-id && stat -c %a /work/suid-id",
      ]);
      expect(planted.out.trim()).toBe("6755");
      const uid = await hostUid(sb);
      const root = await hostRoot(sb);
      const disk = join(dirname(root), "disk");
      // By path: the layers are under a root-only dir.
      for (const path of [join(root, "work/suid-id"), join(disk, "upper/work/suid-id")]) {
        const byPath = runAs(NOBODY, "/", [path, "-u"]);
        expect(byPath.out, path).not.toContain(String(uid));
        expect(byPath.code, `${path}: ${byPath.out}`).not.toBe(0);
      }
      // Even given a way in (a directory opened by root), nosuid mounts run it as the caller.
      const merged = runAs(NOBODY, join(root, "work"), ["./suid-id", "-u"]);
      expect(merged.out.trim()).toBe(String(NOBODY));
      const upper = runAs(NOBODY, join(disk, "upper/work"), ["./suid-id", "-u"]);
      expect(upper.out).not.toContain(String(uid));
    });

    it("the sandbox's overlay and disk mounts are nosuid,nodev; its layers and the image are root's", async () => {
      await using sb = await client.sandboxes.create();
      const root = await hostRoot(sb);
      const mounts = hostMounts();
      const overlay = mounts.find((m) => m.mountPoint === root);
      const disk = mounts.find((m) => m.mountPoint === join(dirname(root), "disk"));
      for (const [name, mount] of [
        ["overlay", overlay],
        ["disk", disk],
      ] as const) {
        expect(mount?.options, name).toContain("nosuid");
        expect(mount?.options, name).toContain("nodev");
      }
      expect(disk?.fsType).toBe("ext4");
      for (const dir of [server.dataDir, join(server.dataDir, "runtime"), join(server.dataDir, "runtime/sandboxes")]) {
        const st = statSync(dir);
        expect([st.uid, st.mode & 0o777], dir).toEqual([0, 0o700]);
      }
      const image = join(server.dataDir, "runtime/images", defaultImageName(DEFAULT_LAYER_ID_BASE));
      for (const path of [image, join(image, "lower"), join(image, "lower/usr"), join(image, "lower/opt/sbx/bin")]) {
        const st = statSync(path);
        expect([st.uid, st.gid, st.mode & 0o022], path).toEqual([0, 0, 0]);
      }
    });

    it("each sandbox runs as its own block of host ids, of no host account, and cannot open another's files", async () => {
      await using a = await client.sandboxes.create();
      await using b = await client.sandboxes.create();
      const [uidA, uidB] = [await hostUid(a), await hostUid(b)];
      expect(Math.abs(uidA - uidB)).toBeGreaterThanOrEqual(65_536);
      for (const uid of [uidA, uidB]) {
        expect(passwdUids().has(uid)).toBe(false);
        expect(uid).toBeGreaterThanOrEqual(2 ** 31);
        expect(uid % 65_536).toBe(0);
      }
      // The files each one makes are its root's on the host (the first id of its block)…
      const [rootA, rootB] = [await hostRoot(a), await hostRoot(b)];
      expect(statSync(join(rootA, `work/marker-${a.id}`)).uid).toBe(uidA);
      expect(statSync(join(rootB, `work/marker-${b.id}`)).uid).toBe(uidB);
      // …and on its disk, canonical: the image store's root (the disk is the same in any block).
      const onDisk = statSync(join(dirname(rootA), "disk/upper/work", `marker-${a.id}`));
      expect([onDisk.uid, onDisk.gid]).toEqual([DEFAULT_LAYER_ID_BASE, DEFAULT_LAYER_ID_BASE]);
      // B's private file, tried with A's uid (given a way in): refused.
      expect((await run(b, ["sh", "-c", "echo secret-of-b > /root/secret && chmod 600 /root/secret"])).code).toBe(0);
      const stolen = runAs(uidA, join(rootB, "root"), ["cat", "secret"]);
      expect(stolen.out).not.toContain("secret-of-b");
      expect(stolen.out).toMatch(/Permission denied/);
    });

    it("a sandbox holding every inotify instance it can get leaves a neighbour's watch working", async () => {
      await using hog = await client.sandboxes.create();
      await using neighbour = await client.sandboxes.create();
      // Opens instances until refused (bounded), reports, and keeps them.
      const hogging = await hog.exec(
        [
          "python3",
          "-c",
          `import ctypes, os, resource, time
libc = ctypes.CDLL(None, use_errno=True)
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = []
while len(held) < 4096:
    fd = libc.inotify_init1(0)
    if fd < 0:
        break
    held.append(fd)
print(len(held), os.strerror(ctypes.get_errno()), flush=True)
time.sleep(120)`,
        ],
        { stderr: "stdout" },
      );
      let report = "";
      for await (const line of hogging.stdout.lines()) {
        report = line;
        break;
      }
      expect(Number(report.split(" ")[0]), report).toBeGreaterThan(100);
      // The hog's own uid is out of instances; the neighbour's is not.
      const watch = neighbour.filesystem.watch("/work");
      try {
        await watch.ready;
        await run(neighbour, ["touch", "/work/seen"]);
        for await (const event of watch) {
          if (event.paths.includes("/work/seen")) break;
        }
      } finally {
        watch.close();
        hogging.kill();
      }
    });

    it("no host configuration under /usr shows inside; python3, bash and root's own files work", async () => {
      // A file only the host has, where hosts keep their own settings (e.g. an npmrc with a token).
      const plantedDir = "/usr/local/etc";
      const planted = join(plantedDir, `sbx-isolation-test-${process.pid}`);
      mkdirSync(plantedDir, { recursive: true });
      writeFileSync(planted, "host-token-1234\n", { mode: 0o644 });
      try {
        await using sb = await client.sandboxes.create();
        const look = await run(sb, [
          "sh",
          "-c",
          `cat ${planted}; find /usr/local -type f | head; ls /usr/etc /usr/src 2>&1; echo end`,
        ]);
        expect(look.out).not.toContain("host-token-1234");
        expect(look.out).toMatch(/No such file/);
        expect(
          look.out
            .trim()
            .split("\n")
            .filter((line) => line.startsWith("/usr/local")),
        ).toEqual([]);
        const works = await run(sb, [
          "bash",
          "-c",
          "python3 -c 'print(6 * 7)' && echo bash=$BASH_VERSINFO && echo '10.1.1.1 db' >> /etc/hosts && grep -c db /etc/hosts && echo mine > /root/f && cat /root/f && mkdir -p /usr/local/lib/x /opt/y /var/tmp/z && touch /usr/bin/evil 2>/dev/null || echo usr-read-only",
        ]);
        expect(works.out).toBe("42\nbash=5\n1\nmine\nusr-read-only\n");
      } finally {
        rmSync(planted, { force: true });
      }
    });
  });

  describe("sandbox disks (local runtime)", () => {
    const dataDir = mkdtempSync(join(tmpdir(), "sbx-disk-"));
    let runtime: SandboxRuntime;
    beforeAll(() => {
      runtime = createLocalRuntime({ dataDir, warmPoolSize: 0 });
    });
    afterAll(async () => {
      await runtime.close();
      rmSync(dataDir, { recursive: true, force: true });
    });

    const sh = async (sb: RuntimeSandbox, script: string) => {
      const p = await sb.exec({ argv: ["sh", "-c", script], env: {}, pty: false, mergeStderr: true });
      const chunks: Buffer[] = [];
      p.onStdout((chunk) => chunks.push(Buffer.from(chunk)));
      const exit = await p.exit;
      return { out: Buffer.concat(chunks).toString(), exit };
    };
    const hostBytes = (path: string) => statSync(path).blocks * 512;

    it("a write past diskMiB fails inside with ENOSPC and the host file stays within it; the default takes 100 MiB", async () => {
      const small = await runtime.createSandbox({ id: "small-disk", env: {}, network: BLOCKED_NETWORK, diskMiB: 64 });
      const roomy = await runtime.createSandbox({ id: "default-disk", env: {}, network: BLOCKED_NETWORK });
      try {
        const full = await sh(small, "dd if=/dev/zero of=/work/big bs=1M count=100 2>&1; echo rc=$?");
        expect(full.out).toMatch(/No space left on device/);
        expect(full.out).not.toMatch(/rc=0/);
        const image = join(dataDir, "runtime/sandboxes/small-disk/disk.img");
        expect(hostBytes(image)).toBeLessThanOrEqual(64 * MiB);
        // Removing the file frees the space (inside, and on the host: the disk discards).
        expect((await sh(small, "rm /work/big && echo x > /work/after && cat /work/after")).out).toBe("x\n");
        const fine = await sh(roomy, "dd if=/dev/zero of=/work/big bs=1M count=100 2>&1; echo rc=$?");
        expect(fine.out).toMatch(/rc=0/);
      } finally {
        await Promise.all([small.destroy(), roomy.destroy()]);
      }
    });

    it("a disk that cannot be made fails that create alone: no unhandled rejection, nothing left behind", async () => {
      const unhandled: unknown[] = [];
      const onUnhandled = (reason: unknown) => unhandled.push(reason);
      process.on("unhandledRejection", onUnhandled);
      try {
        for (const diskMiB of [8, 100.5]) {
          await expect(
            runtime.createSandbox({
              id: `bad-disk-${diskMiB}`.replace(".", "-"),
              env: {},
              network: BLOCKED_NETWORK,
              diskMiB,
            }),
          ).rejects.toThrow(/whole number of MiB, at least 16/);
        }
        // Let any stray rejection surface before looking.
        await new Promise((resolve) => setTimeout(resolve, 200));
        expect(unhandled).toEqual([]);
        expect(existsQuietly(join(dataDir, "runtime/sandboxes/bad-disk-8"))).toBe(false);
        // The runtime still starts sandboxes.
        const sb = await runtime.createSandbox({ id: "after-bad-disk", env: {}, network: BLOCKED_NETWORK });
        expect((await sh(sb, "echo ok")).out).toBe("ok\n");
        await sb.destroy();
      } finally {
        process.off("unhandledRejection", onUnhandled);
      }
    });

    it("/tmp (a tmpfs) is bounded by the sandbox's memory limit: the writer is OOM-killed, never the agent", async () => {
      // tmpfs pages are charged to the sandbox's memory cgroup (and there is no swap to move them
      // to). They belong to no process, so every process is small: the agent, were it as likely
      // a victim as the writer, would take the sandbox down with it.
      const sb = await runtime.createSandbox({
        id: "tmp-bound",
        env: {},
        network: BLOCKED_NETWORK,
        memoryLimitMiB: 64,
      });
      try {
        const scores = await sh(sb, "cat /proc/1/oom_score_adj /proc/self/oom_score_adj");
        expect(scores.out).toBe("0\n500\n");
        const { out, exit } = await sh(sb, "dd if=/dev/zero of=/tmp/big bs=1M count=200 2>&1; echo rc=$?");
        expect(out).not.toMatch(/200\+0 records out/);
        expect(out).toMatch(/rc=137\n$/);
        expect(exit).toEqual({ kind: "exited", code: 0 });
        expect((await sh(sb, "rm /tmp/big; echo still here")).out).toBe("still here\n");
      } finally {
        await sb.destroy();
      }
    });

    it("uploads into its tmpfs mounts (/tmp, /dev) stop at the sandbox's memory limit with no_space", async () => {
      // The server writes an upload itself, and a page it writes into a tmpfs is charged to the
      // server's memory cgroup, not the sandbox's; the sandbox's tmpfs mounts are as large as
      // half the host's memory. Unbounded, uploads alone could fill the host.
      const sb = await runtime.createSandbox({
        id: "tmp-upload",
        env: {},
        network: BLOCKED_NETWORK,
        memoryLimitMiB: 64,
      });
      try {
        const piece = Buffer.alloc(MiB, 7);
        for (const path of ["/tmp/big", "/dev/big"]) {
          const upload = await sb.fs.upload(path);
          const error = await (async () => {
            for (let i = 0; i < 100; i++) await upload.write(piece);
            await upload.commit();
          })().then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(error, path).toBeInstanceOf(RuntimeFsError);
          expect((error as RuntimeFsError).kind, path).toBe("no_space");
          await upload.abort().catch(() => {});
        }
        // Nothing of them is left, and what fits still goes in.
        expect((await sh(sb, "ls /tmp /dev | grep -c big")).out).toBe("0\n");
        const upload = await sb.fs.upload("/tmp/fits");
        for (let i = 0; i < 16; i++) await upload.write(piece);
        await upload.commit();
        expect((await sh(sb, "wc -c < /tmp/fits")).out).toBe(`${16 * MiB}\n`);
      } finally {
        await sb.destroy();
      }
    });
  });
}

function existsQuietly(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}
