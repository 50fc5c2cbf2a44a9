// Sandboxes started from images of the image store, with the real local runtime (bubblewrap)
// and a real store: a busybox-only root (no python, no bash) works for every kind of call;
// the image's owners are kept (shifted into the sandbox's own block of host ids, through
// idmapped layers); root has Docker's capabilities (less three) there and nothing more; the image's User
// applies; layers are shared between sandboxes of different blocks; nothing of the store or
// of a sandbox is reachable by a host user. Runtime level: the server wires the store in later.
import { execFileSync, spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ImageRecord, RuntimeSandbox, RuntimeSandboxSpec, RuntimeWatchEvent } from "@sbx/server-kit";
import { BLOCKED_NETWORK, RuntimeFsError } from "@sbx/server-kit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OciImageStore } from "./images/index.js";
import { imageStoreAvailable } from "./images/test-support/available.js";
import type { TarEntry } from "./images/test-support/tar-layers.js";
import { defaultImageName } from "./runtime/local/image.js";
import { createLocalRuntime } from "./runtime/local/index.js";
import { imageRootPartsName } from "./runtime/local/mount-point-layers.js";
import { startTestResolver, type TestResolver } from "./runtime/local/test-support/dns-resolver.js";
import { buildIdsProbe, busyboxRoot, importTestImage, runIn, shIn } from "./runtime/local/test-support/image-roots.js";
import { DEFAULT_LAYER_ID_BASE } from "./runtime/local/uid-range.js";
import { realServerAvailable } from "./test-support.js";

const available =
  (await imageStoreAvailable("image root tests", ["tar", "go"])) && (await realServerAvailable("image root tests"));

const NOBODY = 65_534;
/** Docker's default set less NET_RAW, MKNOD and AUDIT_WRITE (launch-command.ts). */
const ROOT_CAPS = "00000000800405fb";
const NO_CAPS = "0000000000000000";
/** A name the test's resolver answers, and its address (in the test range: nothing is there). */
const DNS_NAME = "web.sbx.test";
const DNS_ADDRESS = "198.18.7.7";
/** An open network (DNS through the gateway's forwarder; the runtime's ceiling allows nothing real). */
const OPEN_NETWORK = { blockNetwork: false, cidrAllowlist: [], ports: [] };

/** `argv` run on the host as uid/gid `id` (no groups, no capabilities). */
function runAsHostUser(id: number, argv: string[]): { out: string; code: number | null } {
  const r = spawnSync("setpriv", [`--reuid=${id}`, `--regid=${id}`, "--clear-groups", "--inh-caps=-all", ...argv], {
    encoding: "utf8",
  });
  return { out: `${r.stdout}${r.stderr}`, code: r.status };
}

/** Host processes whose real uid is `uid`, with their command names. */
function hostProcessesOf(uid: number): { pid: number; name: string }[] {
  const found: { pid: number; name: string }[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const status = (() => {
      try {
        return readFileSync(`/proc/${entry}/status`, "utf8");
      } catch {
        return "";
      }
    })();
    const owner = /^Uid:\s+(\d+)/m.exec(status)?.[1];
    if (owner === String(uid)) found.push({ pid: Number(entry), name: /^Name:\s+(.*)$/m.exec(status)?.[1] ?? "" });
  }
  return found;
}

/** The sandbox's block: its root's host id, from its own uid_map. */
async function baseOf(sb: RuntimeSandbox): Promise<number> {
  const { out } = await runIn(sb, ["cat", "/proc/self/uid_map"]);
  const [inside, outside, count] = out.trim().split(/\s+/).map(Number);
  expect([inside, count]).toEqual([0, 65_536]);
  return outside as number;
}

describe.runIf(available)("sandboxes from images (local runtime, image store)", () => {
  const work = mkdtempSync(join(tmpdir(), "sbx-image-roots-"));
  let store: OciImageStore;
  let runtime: ReturnType<typeof createLocalRuntime>;
  const images = {} as Record<
    | "base"
    | "app"
    | "many"
    | "solo"
    | "resolvLink"
    | "resolvHostLink"
    | "etcLink"
    | "etcRelative"
    | "etcAbsolute"
    | "etcChain"
    | "etcOpaque"
    | "etcLoop"
    | "etcOutside"
    | "etcFile"
    | "etcTmp",
    ImageRecord
  >;
  // Where crafted images point their /etc/resolv.conf or /etc (through bwrap's view of the host
  // as /oldroot while it sets up): writable by every host user, so only the root layout stops a write.
  const hostDrop = mkdtempSync("/tmp/sbx-image-drop-");
  chmodSync(hostDrop, 0o777);
  // A host path a crafted image names as its /etc/resolv.conf: nothing may ever be made there.
  const hostSecret = `/run/sbx-host-secret-${process.pid}`;
  let resolver: TestResolver;
  const soloImage = (layers: TarEntry[][]) => ({
    layers: [...layers, [{ name: "etc/solo", content: "solo's own layer\n" }]],
    config: { User: "app" },
  });
  let bottomAndTop: TarEntry[][] = [];
  const sandboxes: RuntimeSandbox[] = [];
  let count = 0;

  /** A sandbox from `image`, as the engine asks for one (the image's User and WorkingDir). */
  const sandbox = async (image: ImageRecord, spec: Partial<RuntimeSandboxSpec> = {}) => {
    const sb = await runtime.createSandbox({
      id: `img-${++count}`,
      image,
      user: image.config.user || undefined,
      env: {},
      workdir: image.config.workingDir || undefined,
      network: BLOCKED_NETWORK,
      ...spec,
    });
    sandboxes.push(sb);
    return sb;
  };

  beforeAll(async () => {
    store = await OciImageStore.open({ dir: join(work, "store") });
    resolver = await startTestResolver({ [DNS_NAME]: DNS_ADDRESS });
    runtime = createLocalRuntime({
      dataDir: join(work, "data"),
      layers: store,
      warmPoolSize: 0,
      network: { allow: ["198.18.0.0/15"], dnsUpstream: [resolver.upstream] },
    });
    expect(await runtime.checkPrerequisites()).toEqual([]);
    await runtime.cleanupLeftovers();
    const ids = buildIdsProbe(work);
    const own = (name: string, uid: number, extra: Partial<TarEntry> = {}): TarEntry => ({
      name,
      uid,
      gid: uid,
      ...extra,
    });
    const bottom: TarEntry[] = [
      ...busyboxRoot(),
      { name: "etc/", type: "directory", mode: 0o755 },
      {
        name: "etc/passwd",
        content: "root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234::/home/app:/bin/sh\n",
      },
      { name: "etc/group", content: "root:x:0:\napp:x:1234:\nstaff:x:50:app\n" },
      { name: "etc/rootfile", content: "root's\n", mode: 0o644 },
      { name: "etc/old", content: "whited out above\n" },
      { name: "root/", type: "directory", mode: 0o700 },
      { name: "root/secret", content: "root only\n", mode: 0o600 },
      { name: "home/", type: "directory", mode: 0o755 },
      own("home/app/", 1234, { type: "directory", mode: 0o750 }),
      own("home/app/notes", 1234, { content: "app's notes\n", mode: 0o640 }),
      { name: "srv/", type: "directory", mode: 0o755 },
      { name: "srv/shared/", type: "directory", mode: 0o2775, uid: 0, gid: 1234 },
      { name: "opt/data/from-l1", content: "1\n" },
      { name: "usr/bin/", type: "directory", mode: 0o755 },
      { name: "usr/bin/ids", content: ids, mode: 0o755 },
      { name: "usr/bin/suid-ids", content: ids, mode: 0o4755 },
    ];
    const top: TarEntry[] = [
      { name: "etc/.wh.old", content: "" },
      { name: "opt/data/.wh..wh..opq", content: "" },
      { name: "opt/data/from-l2", content: "2\n" },
      own("etc/motd", 1234, { content: "layer two\n" }),
    ];
    bottomAndTop = [bottom, top];
    images.base = await importTestImage(store, work, { layers: [bottom, top] });
    images.solo = await importTestImage(store, work, soloImage(bottomAndTop));
    images.app = await importTestImage(store, work, {
      layers: [bottom, top, [{ name: "etc/app-marker", content: "app\n" }]],
      config: { User: "app", WorkingDir: "/srv/app/work", Env: ["PATH=/usr/bin:/bin", "GREETING=hi"] },
    });
    const numbered = Array.from({ length: 100 }, (_, i): TarEntry[] => [{ name: `layers/${i}`, content: `${i}\n` }]);
    // 103 layers listed, one of them twice (an image may list a layer again): 102 distinct.
    images.many = await importTestImage(store, work, { layers: [bottom, top, ...numbered, top] });
    images.resolvLink = await importTestImage(store, work, {
      layers: [
        [
          ...busyboxRoot(),
          { name: "etc/", type: "directory", mode: 0o755 },
          { name: "etc/passwd", content: "root:x:0:0:root:/root:/bin/sh\n" },
          { name: "etc/resolv.conf", type: "symlink", linkname: `/oldroot${hostDrop}/from-resolv-conf` },
        ],
      ],
    });
    images.resolvHostLink = await importTestImage(store, work, {
      layers: [
        [
          ...busyboxRoot(),
          { name: "etc/", type: "directory", mode: 0o755 },
          { name: "etc/resolv.conf", type: "symlink", linkname: hostSecret },
        ],
      ],
    });
    images.etcLink = await importTestImage(store, work, {
      layers: [[...busyboxRoot(), { name: "etc", type: "symlink", linkname: `/oldroot${hostDrop}/from-etc` }]],
    });
    // Images whose /etc is a symlink: their configuration is where it leads, whose own
    // resolv.conf (a foreign nameserver, or a symlink to the host) is covered by the sandbox's.
    const configIn = (dir: string): TarEntry[] => [
      { name: `${dir}/`, type: "directory", mode: 0o750, uid: 0, gid: 50 },
      { name: `${dir}/passwd`, content: "root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234::/home/app:/bin/sh\n" },
      { name: `${dir}/group`, content: "root:x:0:\napp:x:1234:\nstaff:x:50:app\n" },
      { name: `${dir}/marker`, content: `the image's ${dir}\n` },
    ];
    const linked = (layers: TarEntry[][], config = {}) =>
      importTestImage(store, work, { layers: [[...busyboxRoot(), ...(layers[0] ?? [])], ...layers.slice(1)], config });
    images.etcRelative = await linked([
      [
        { name: "etc", type: "symlink", linkname: "usr/etc" },
        ...configIn("usr/etc"),
        { name: "usr/etc/resolv.conf", content: "nameserver 192.0.2.66\n" },
      ],
    ]);
    images.etcAbsolute = await linked(
      [
        [
          { name: "etc", type: "symlink", linkname: "/usr/etc" },
          ...configIn("usr/etc"),
          { name: "usr/etc/resolv.conf", type: "symlink", linkname: hostSecret },
        ],
      ],
      { User: "app" },
    );
    images.etcChain = await linked([
      [
        { name: "etc", type: "symlink", linkname: "config" },
        { name: "config", type: "symlink", linkname: "/usr/share/../share/conf" },
        { name: "usr/", type: "directory", mode: 0o755 },
        { name: "usr/share", type: "symlink", linkname: "lib/share" },
        ...configIn("usr/lib/share/conf"),
        { name: "usr/lib/share/conf/resolv.conf", type: "symlink", linkname: `/oldroot${hostDrop}/from-chain` },
      ],
    ]);
    // The lower /usr/conf (a symlink to the host) is hidden by an opaque /usr above: /etc leads
    // to a /usr/conf the image does not have (made in the sandbox's root).
    images.etcOpaque = await linked([
      [
        { name: "etc", type: "symlink", linkname: "usr/conf" },
        { name: "usr/conf", type: "symlink", linkname: `/oldroot${hostDrop}` },
      ],
      [
        { name: "usr/", type: "directory", mode: 0o755 },
        { name: "usr/.wh..wh..opq", content: "" },
        { name: "usr/bin/", type: "directory", mode: 0o755 },
      ],
    ]);
    images.etcLoop = await linked([
      [
        { name: "etc", type: "symlink", linkname: "a" },
        { name: "a", type: "symlink", linkname: "/etc" },
      ],
    ]);
    images.etcOutside = await linked([[{ name: "etc", type: "symlink", linkname: "../../.." }]]);
    images.etcFile = await linked([[{ name: "etc", type: "symlink", linkname: "bin/busybox" }]]);
    images.etcTmp = await linked([[{ name: "etc", type: "symlink", linkname: `/tmp/${hostDrop.slice(5)}` }]]);
  }, 300_000);

  afterAll(async () => {
    await Promise.all(sandboxes.map((sb) => sb.destroy()));
    await runtime?.close();
    store?.close();
    rmSync(work, { recursive: true, force: true });
    rmSync(hostDrop, { recursive: true, force: true });
    resolver?.socket.close();
  });

  it("a busybox-only root (no python, no bash): sh -c, exec, a terminal, files and watch", async () => {
    const sb = await sandbox(images.base);
    const sh = await shIn(sb, "echo hello from $0; command -v python3 bash || echo none; ls /usr; ls /usr/bin");
    expect(sh).toEqual({ out: "hello from sh\nnone\nbin\nids\nsuid-ids\n", code: 0 });
    // Nothing of the host's /usr: no mount there at all.
    const mounts = await runIn(sb, ["cat", "/proc/self/mountinfo"]);
    expect(mounts.out.split("\n").filter((line) => line.split(" ")[4]?.startsWith("/usr"))).toEqual([]);
    expect(await runIn(sb, ["id", "-u"])).toEqual({ out: "0\n", code: 0 });
    const missing = await runIn(sb, ["python3", "-c", "1"]);
    expect(missing.code).toBe(127);
    const tty = await runIn(sb, ["sh"], { pty: true, stdin: "tty; echo in-a-tty; exit 3\n" });
    expect(tty.out).toMatch(/\/dev\/pts\/\d+/);
    expect(tty.out).toContain("in-a-tty");
    expect(tty.code).toBe(3);

    const watchStop = new AbortController();
    await runIn(sb, ["mkdir", "-p", "/work"]);
    const events = await sb.fs.watch("/work", false, watchStop.signal);
    const upload = await sb.fs.upload("/work/hello.txt");
    await upload.write(new TextEncoder().encode("hello, files\n"));
    await upload.commit();
    const seen: RuntimeWatchEvent[] = [];
    for await (const batch of events) {
      seen.push(...batch);
      if (seen.some((e) => e.paths.includes("/work/hello.txt"))) break;
    }
    watchStop.abort();
    const read: Buffer[] = [];
    for await (const piece of await sb.fs.read("/work/hello.txt", 0, new AbortController().signal)) {
      read.push(Buffer.from(piece));
    }
    expect(Buffer.concat(read).toString()).toBe("hello, files\n");
    expect((await sb.fs.stat("/work/hello.txt")).size).toBe(13);
    expect((await sb.fs.list("/")).map((e) => e.name)).toEqual(
      expect.arrayContaining(["bin", "etc", "home", "root", "srv", "usr", "work"]),
    );
    expect((await runIn(sb, ["stat", "-c", "%u:%g %a", "/work/hello.txt"])).out).toBe("0:0 644\n");
  });

  it("keeps the image's owners, whiteouts and opaque dirs; root has Docker's capabilities less three, a user none, and setuid gives nothing", async () => {
    const sb = await sandbox(images.base);
    const owners = await shIn(
      sb,
      "stat -c '%n %u:%g %a' /home/app /home/app/notes /etc/rootfile /etc/motd /srv/shared /root /usr/bin/suid-ids",
    );
    expect(owners.out).toBe(
      [
        "/home/app 1234:1234 750",
        "/home/app/notes 1234:1234 640",
        "/etc/rootfile 0:0 644",
        "/etc/motd 1234:1234 644",
        "/srv/shared 0:1234 2775",
        "/root 0:0 700",
        "/usr/bin/suid-ids 0:0 4755",
        "",
      ].join("\n"),
    );
    expect((await runIn(sb, ["ls", "-ln", "/home"])).out).toMatch(/^d.* 1234 +1234 .* app$/m);
    expect((await shIn(sb, "ls /etc/old 2>&1; ls /opt/data")).out).toMatch(/No such file[\s\S]*^from-l2\n$/m);

    // Root: Docker's set less three (and none inheritable or ambient), no_new_privs, seccomp.
    expect((await runIn(sb, ["ids"])).out).toBe(
      `uid=0 euid=0 gid=0 egid=0 groups=[]\nCapInh: ${NO_CAPS}\nCapPrm: ${ROOT_CAPS}\nCapEff: ${ROOT_CAPS}\nCapAmb: ${NO_CAPS}\n`,
    );
    const powers = await shIn(
      sb,
      [
        "cat /home/app/notes",
        "chown 1234 /etc/rootfile && stat -c %u /etc/rootfile && chown 0 /etc/rootfile",
        "touch /root/mine && chown 1234:1234 /root/mine && stat -c %u:%g /root/mine",
        "chown 70000 /root/mine 2>/dev/null && echo chowned-out-of-block || echo no-chown-out-of-block",
        "mknod /root/null c 1 3 2>/dev/null && echo device || echo no-device",
        "mount -t tmpfs none /mnt 2>/dev/null && echo mounted || echo no-mount",
        "unshare -U true 2>/dev/null && echo userns || echo no-userns",
      ].join("; "),
    );
    expect(powers.out).toBe("app's notes\n1234\n1234:1234\nno-chown-out-of-block\nno-device\nno-mount\nno-userns\n");
    // File calls act as root without capabilities: the permission bits bind them (as ever).
    await expect(sb.fs.read("/home/app/notes", 0, new AbortController().signal)).rejects.toMatchObject({
      kind: "permission_denied",
    });

    // Another user, through su (busybox): its ids and groups, no capabilities, no way back.
    const asApp = (script: string) => shIn(sb, `su app -s /bin/sh -c '${script}' </dev/null`);
    expect((await asApp("id -u; id -G; ids | grep Cap")).out).toBe(
      `1234\n1234 50\nCapInh: ${NO_CAPS}\nCapPrm: ${NO_CAPS}\nCapEff: ${NO_CAPS}\nCapAmb: ${NO_CAPS}\n`,
    );
    expect((await asApp("echo x >> /etc/rootfile || echo refused")).out).toMatch(/refused\n$/);
    expect((await asApp("cat /root/secret || echo refused")).out).toMatch(/refused\n$/);
    expect((await asApp("echo mine > /home/app/new && stat -c %u:%g /home/app/new")).out).toBe("1234:1234\n");
    expect((await asApp("echo x > /srv/shared/f && stat -c %u:%g /srv/shared/f")).out).toBe("1234:1234\n");
    expect((await asApp("su -c id root </dev/null >/dev/null 2>&1 && echo root || echo refused")).out).toBe(
      "refused\n",
    );
    // A setuid-root file, and a file carrying every file capability: nothing for the user, and
    // never more than the bounding set for root (no_new_privs, nosuid).
    expect((await asApp("suid-ids | head -1")).out).toMatch(/^uid=1234 euid=1234 gid=1234 egid=1234 groups=/);
    expect(
      (await shIn(sb, "cp /usr/bin/ids /root/fcap && chmod 755 /root /root/fcap && ids setcap /root/fcap")).code,
    ).toBe(0);
    expect((await asApp("/root/fcap | grep CapPrm")).out).toBe(`CapPrm: ${NO_CAPS}\n`);
    expect((await runIn(sb, ["/root/fcap"])).out).toContain(`CapPrm: ${ROOT_CAPS}\n`);
  });

  it("runs every process and file call as the image's User, in its WorkingDir (made as Docker does, root's), with HOME from passwd", async () => {
    const sb = await sandbox(images.app);
    const who = await shIn(sb, 'whoami; id -G; pwd; echo "$HOME $GREETING"; stat -c %u:%g /srv/app /srv/app/work');
    // The missing WorkingDir and its missing parent are the sandbox root's (Docker's
    // SetupWorkingDirectory), not the user's.
    expect(who).toEqual({ out: "app\n1234 50\n/srv/app/work\n/home/app hi\n0:0\n0:0\n", code: 0 });
    expect((await shIn(sb, "stat -c %a /srv/app /srv/app/work; touch /srv/app/work/x 2>&1")).out).toMatch(
      /^755\n755\n.*Permission denied/,
    );
    expect((await runIn(sb, ["id", "-u"], { pty: true })).out).toBe("1234\r\n");
    // A program only root could run is refused as the user would find it.
    expect((await runIn(sb, ["cat", "/root/secret"])).code).not.toBe(0);
    const denied = await runIn(sb, ["/root/secret"]);
    expect(denied.out).toMatch(/^sbx: cannot run \/root\/secret: Permission denied\n$/);
    expect(await runIn(sb, ["pwd"], { workdir: "/root" })).toEqual({
      out: "sbx: cannot change to directory /root: Permission denied\n",
      code: 126,
    });

    // File calls act as the user too: its uploads are its own; root's files stay root's.
    const upload = await sb.fs.upload("/home/app/up.txt");
    await upload.write(new TextEncoder().encode("up\n"));
    await upload.commit();
    expect((await runIn(sb, ["stat", "-c", "%u:%g", "/home/app/up.txt"])).out).toBe("1234:1234\n");
    await expect(sb.fs.upload("/etc/not-yours")).rejects.toMatchObject({ kind: "permission_denied" });
    await expect(sb.fs.read("/root/secret", 0, new AbortController().signal)).rejects.toBeInstanceOf(RuntimeFsError);
    await expect(sb.fs.makeDirectory("/srv/not-yours", true)).rejects.toMatchObject({ kind: "permission_denied" });
    const notes: Buffer[] = [];
    for await (const piece of await sb.fs.read("/home/app/notes", 0, new AbortController().signal)) {
      notes.push(Buffer.from(piece));
    }
    expect(Buffer.concat(notes).toString()).toBe("app's notes\n");
  });

  it("takes a User as a name or uid, with a group by name or gid; an unknown name fails the create", async () => {
    for (const [user, expected] of [
      ["1234", "1234 1234 1234 50"],
      ["1234:50", "1234 50 50"],
      ["app:staff", "1234 50 50"],
      ["4321", "4321 0 0"],
      ["root", "0 0 0"],
    ] as const) {
      const sb = await sandbox(images.base, { user });
      expect((await shIn(sb, 'echo "$(id -u) $(id -g) $(id -G)"')).out, user).toBe(`${expected}\n`);
    }
    await expect(sandbox(images.base, { user: "nobody-here" })).rejects.toThrow(/unable to find user nobody-here/);
    await expect(sandbox(images.base, { user: "app:nogroup" })).rejects.toThrow(/unable to find group nogroup/);
    await expect(sandbox(images.base, { user: "70000" })).rejects.toThrow(/outside the ids a sandbox has/);
  });

  it("shares one layer between sandboxes of different blocks at once; the host sees their processes as BASE+uid; nothing idmapped is attached anywhere", async () => {
    const [a, b] = await Promise.all([sandbox(images.app), sandbox(images.app)]);
    const [baseA, baseB] = await Promise.all([baseOf(a), baseOf(b)]);
    expect(Math.abs(baseA - baseB) % 65_536).toBe(0);
    expect(baseA).not.toBe(baseB);
    const [inodeA, inodeB] = await Promise.all([
      runIn(a, ["stat", "-L", "-c", "%i", "/bin/busybox"]),
      runIn(b, ["stat", "-L", "-c", "%i", "/bin/busybox"]),
    ]);
    const layer = store.layerDir(images.app.layers[0] as string);
    expect(inodeA.out).toBe(`${statSync(join(layer, "bin/busybox")).ino}\n`);
    expect(inodeB.out).toBe(inodeA.out);
    // The store's copy is owned canonically (the layer id block), never by a sandbox's ids.
    expect(statSync(join(layer, "home/app")).uid).toBe(DEFAULT_LAYER_ID_BASE + 1234);

    const sleeping = await Promise.all([a, b].map((sb) => sb.exec({ argv: ["sleep", "60"], env: {}, pty: false })));
    try {
      for (const base of [baseA, baseB]) {
        expect(hostProcessesOf(base + 1234).map((p) => p.name)).toContain("sleep");
      }
      // Not a mount of the host's, nor of any sandbox's, is idmapped where a path leads to it.
      const idmapped = execFileSync("sh", ["-c", "cat /proc/[0-9]*/mountinfo 2>/dev/null | grep -c idmapped || true"], {
        encoding: "utf8",
      });
      expect(idmapped.trim()).toBe("0");
      expect((await runIn(a, ["grep", "-c", "idmapped", "/proc/self/mountinfo"])).out).toBe("0\n");
    } finally {
      for (const p of sleeping) p.signal(9);
    }
  });

  it("a host user reaches none of the store, the sandbox's files or its processes' roots", async () => {
    const sb = await sandbox(images.app);
    const sleeping = await sb.exec({ argv: ["sleep", "60"], env: {}, pty: false });
    try {
      const base = await baseOf(sb);
      const [sleeper] = hostProcessesOf(base + 1234).filter((p) => p.name === "sleep");
      expect(sleeper).toBeDefined();
      const layer = store.layerDir(images.app.layers[0] as string);
      for (const [who, argv] of [
        [NOBODY, ["ls", join(work, "store", "layers")]],
        [NOBODY, ["cat", join(layer, "etc/rootfile")]],
        [NOBODY, ["ls", join(work, "data", "runtime", "sandboxes")]],
        [NOBODY, ["ls", `/proc/${sleeper?.pid}/root/`]],
        // A host process with a sandbox user's id (were there one) cannot reach the store either.
        [base + 1234, ["cat", join(layer, "home/app/notes")]],
      ] as const) {
        const r = runAsHostUser(who, [...argv]);
        expect(r.code, `${who}: ${argv.join(" ")}: ${r.out}`).not.toBe(0);
        expect(r.out).toMatch(/Permission denied/);
      }
    } finally {
      sleeping.signal(9);
    }
  });

  it("hands out a warm sandbox of an image ready, as its User; holds the image while any sandbox stands on it; never hands out one whose image's layers were removed", async () => {
    const warmRuntime = createLocalRuntime({ dataDir: join(work, "warm"), layers: store, warmPoolSize: 1 });
    const ready = () =>
      [...(warmRuntime as unknown as { warmSandboxes: { images: Map<string, number> } }).warmSandboxes.images]
        .filter(([key]) => key.startsWith(images.solo.id))
        .reduce((sum, [, n]) => sum + n, 0);
    const waitForWarm = async () => {
      for (let i = 0; i < 300 && ready() === 0; i++) await new Promise((r) => setTimeout(r, 100));
      expect(ready()).toBe(1);
    };
    const create = (id: string) =>
      warmRuntime.createSandbox({ id, image: images.solo, user: "app", env: {}, network: BLOCKED_NETWORK });
    try {
      const first = await create("warm-1"); // cold: the image's pool starts filling now
      await waitForWarm();
      const second = await create("warm-2");
      expect(ready()).toBe(0); // the warm one was taken
      expect((await shIn(second, 'whoami; echo "$HOME"; cat /etc/solo')).out).toBe(
        "app\n/home/app\nsolo's own layer\n",
      );
      await waitForWarm();
      await Promise.all([first.destroy(), second.destroy()]);
      // The warm one still stands on the image's layers (an image store asks the runtime):
      // released, it is destroyed, and nothing of the runtime holds the image any more.
      const inUse = () => warmRuntime.imageInUse?.(images.solo.id);
      expect(inUse()).toBe(true);
      await warmRuntime.releaseImage?.(images.solo.id);
      expect(ready()).toBe(0);
      expect(inUse()).toBe(false);
      // The image goes (its own layer with it), and comes back: a new layer dir.
      await store.delete(images.solo.id);
      images.solo = await importTestImage(store, work, soloImage(bottomAndTop));
      const starting = create("warm-3");
      expect(inUse()).toBe(true); // from the start of its start
      const third = await starting;
      expect((await shIn(third, "whoami; cat /etc/solo")).out).toBe("app\nsolo's own layer\n");
      const destroyed = third.destroy();
      expect(inUse()).toBe(true); // until its destroy has ended
      await destroyed;
      await warmRuntime.releaseImage?.(images.solo.id); // (its pool's refill too)
      expect(inUse()).toBe(false);
    } finally {
      await warmRuntime.close();
    }
  });

  it("a recursive watch watches and lists what comes later as the user, without capabilities, and follows no symlink", async () => {
    // Root's file calls act without capabilities: a directory of another user's, mode 0700, is
    // as closed to them as to any user (the agent itself, root with capabilities, could list it).
    const sb = await sandbox(images.base);
    const setup = await shIn(
      sb,
      [
        "mkdir -p /srv/w /srv/stage/box/vault /tmp/outside",
        "echo s > /srv/stage/box/vault/secret",
        "chown -R 1234:1234 /srv/stage/box/vault && chmod 700 /srv/stage/box/vault",
        "ln -s /tmp/outside /srv/stage/box/link",
      ].join(" && "),
    );
    expect(setup).toEqual({ out: "", code: 0 });
    await expect(sb.fs.list("/srv/stage/box/vault")).rejects.toMatchObject({ kind: "permission_denied" });
    const stop = new AbortController();
    const batches = (await sb.fs.watch("/srv/w", true, stop.signal))[Symbol.asyncIterator]();
    const seen: string[] = [];
    const until = async (path: string) => {
      while (!seen.includes(path)) {
        const next = await batches.next();
        if (next.done) throw new Error(`the watch ended before ${path}; saw ${JSON.stringify(seen)}`);
        for (const event of next.value) seen.push(...event.paths);
      }
    };
    try {
      // Moved in whole: the watch lists it and watches its directories, as root without capabilities.
      expect((await runIn(sb, ["mv", "/srv/stage/box", "/srv/w/box"])).code).toBe(0);
      await until("/srv/w/box/link");
      // A change where the symlink leads, then a marker (one inotify queue: in that order).
      expect((await runIn(sb, ["touch", "/tmp/outside/y", "/srv/w/done"])).code).toBe(0);
      await until("/srv/w/done");
    } finally {
      stop.abort();
    }
    expect(seen).toContain("/srv/w/box/vault");
    expect(seen.filter((p) => p.includes("secret") || p.startsWith("/srv/w/box/link/"))).toEqual([]);
  });

  /** Nothing was made where crafted images point on the host. */
  const hostUntouched = () => {
    expect(readdirSync(hostDrop)).toEqual([]);
    expect(existsSync(hostSecret)).toBe(false);
  };

  it("an image's /etc/resolv.conf or /etc as a symlink to the host makes nothing there; the sandbox still gets its DNS config", async () => {
    for (const image of [images.resolvLink, images.resolvHostLink]) {
      const sb = await sandbox(image);
      const r = await shIn(sb, "cat /etc/resolv.conf; stat -c '%F %u:%g %a' /etc /etc/resolv.conf");
      hostUntouched();
      expect(r.out).toMatch(/^nameserver \d+\.\d+\.\d+\.1\ndirectory 0:0 755\nregular file \d+:\d+ \d+\n$/);
    }
    // /etc itself a symlink to the host (through bwrap's /oldroot): it stays the image's
    // symlink, leading to a directory of the sandbox's own root (made there, holding the DNS config).
    const sb = await sandbox(images.etcLink);
    const r = await shIn(sb, "readlink /etc; cat /etc/resolv.conf; ls -A /etc/; readlink -f /etc/resolv.conf");
    hostUntouched();
    expect(r.out).toMatch(
      new RegExp(
        `^/oldroot${hostDrop}/from-etc\nnameserver \\d+\\.\\d+\\.\\d+\\.1\nresolv.conf\n/oldroot${hostDrop}/from-etc/resolv.conf\n$`,
      ),
    );
    // (An image's own /etc shows through as before.)
    const own = await sandbox(images.base);
    expect((await shIn(own, "cat /etc/rootfile; echo x > /etc/new && stat -c %u:%g /etc /etc/new")).out).toBe(
      "root's\n0:0\n0:0\n",
    );
  });

  it("an image whose /etc is a symlink keeps it: its files, users and owners show at /etc, with the sandbox's DNS config (names resolve)", async () => {
    for (const [image, link, dir] of [
      [images.etcRelative, "usr/etc", "/usr/etc"],
      [images.etcAbsolute, "/usr/etc", "/usr/etc"],
      [images.etcChain, "config", "/usr/lib/share/conf"],
    ] as const) {
      const sb = await sandbox(image, { user: "root" });
      const r = await shIn(
        sb,
        "readlink /etc; readlink -f /etc; cat /etc/marker /etc/resolv.conf; stat -c '%F %u:%g %a' /etc/ /etc/passwd /etc/resolv.conf",
      );
      expect(r.out, link).toMatch(
        new RegExp(
          `^${link}\n${dir}\nthe image's ${dir.slice(1)}\nnameserver \\d+\\.\\d+\\.\\d+\\.1\ndirectory 0:50 750\nregular file 0:0 644\nregular file \\d+:\\d+ 444\n$`,
        ),
      );
      // Root writes in the image's /etc as in any image (where the symlink leads).
      expect((await shIn(sb, `echo new > /etc/new && cat ${dir}/new`)).out).toBe("new\n");
      // The image's users are found in its /etc: the image's User, or one asked for.
      const asApp = await sandbox(image, { user: "app" });
      expect((await shIn(asApp, "whoami; id -G; cat /etc/marker")).out).toBe(
        `app\n1234 50\nthe image's ${dir.slice(1)}\n`,
      );
    }
    expect(images.etcAbsolute.config.user).toBe("app");
    expect((await shIn(await sandbox(images.etcAbsolute), "whoami")).out).toBe("app\n");

    // Names resolve through the sandbox's DNS (the forwarder, then the test's resolver).
    const online = await sandbox(images.etcRelative, { network: OPEN_NETWORK });
    const lookup = await shIn(online, `nslookup ${DNS_NAME}`);
    expect(lookup.out).toContain(DNS_ADDRESS);
    expect(resolver.asked).toContain(DNS_NAME);

    // An opaque /usr above hides a lower /usr/conf: /etc leads to a /usr/conf of the sandbox's own.
    const opaque = await sandbox(images.etcOpaque);
    expect((await shIn(opaque, "readlink -f /etc; ls -A /etc/ /usr; cat /etc/resolv.conf")).out).toMatch(
      /^\/usr\/conf\n\/etc\/:\nresolv\.conf\n\n\/usr:\nbin\nconf\nnameserver \d+\.\d+\.\d+\.1\n$/,
    );
    hostUntouched();
  });

  it("refuses an image whose /etc loops, leads out of its root, to a file, or into a mount point, and makes nothing", async () => {
    const sandboxesDir = join(work, "data", "runtime", "sandboxes");
    const before = readdirSync(sandboxesDir).sort();
    for (const [image, problem] of [
      [images.etcLoop, /its \/etc is a symlink that loops \(over 40 symlinks\)/],
      [images.etcOutside, /its \/etc is a symlink that leads out of the image's root/],
      [images.etcFile, /its \/etc is a symlink that leads to "\/bin\/busybox", which is not a directory/],
      [images.etcTmp, /its \/etc is a symlink that leads into \/tmp, which the sandbox mounts over/],
    ] as const) {
      expect(await runtime.imageProblem?.(image)).toMatch(
        new RegExp(`^image ${image.id} cannot be started: ${problem.source}$`),
      );
      await expect(sandbox(image)).rejects.toThrow(problem);
    }
    expect(readdirSync(sandboxesDir).sort()).toEqual(before);
    hostUntouched();
  });

  it("gives images whose /etc leads to one path one mount-point layer, removed once no sandbox stands on it", async () => {
    const etcLinks = join(work, "data", "runtime", "images", imageRootPartsName(store.layerIdBase), "etc-links");
    const layersNow = () => (existsSync(etcLinks) ? readdirSync(etcLinks).sort() : []);
    const before = layersNow();
    const conf: TarEntry[] = [{ name: "srv/conf/marker", content: "srv\n" }];
    const relative = await importTestImage(store, work, {
      layers: [[...busyboxRoot(), { name: "etc", type: "symlink", linkname: "srv/conf" }, ...conf]],
    });
    const absolute = await importTestImage(store, work, {
      layers: [[...busyboxRoot(), { name: "etc", type: "symlink", linkname: "/srv/./conf" }, ...conf]],
    });
    const create = (image: ImageRecord) =>
      runtime.createSandbox({ id: `img-${++count}`, image, env: {}, network: BLOCKED_NETWORK });
    const [a, b] = await Promise.all([create(relative), create(absolute)]);
    const added = layersNow().filter((name) => !before.includes(name));
    expect(added).toHaveLength(1);
    for (const sb of [a, b])
      expect((await shIn(sb, "cat /etc/marker; ls /etc")).out).toBe("srv\nmarker\nresolv.conf\n");
    await a.destroy();
    expect(layersNow()).toContain(added[0]);
    await b.destroy();
    for (let i = 0; i < 100 && layersNow().includes(added[0] as string); i++)
      await new Promise((r) => setTimeout(r, 50));
    expect(layersNow()).toEqual(before);
    // Made again for the next sandbox that needs it.
    const c = await create(relative);
    expect(layersNow()).toContain(added[0]);
    expect((await shIn(c, "cat /etc/marker")).out).toBe("srv\n");
    await c.destroy();
  });

  it("removes, at start, image parts of other versions or id bases, builds cut short and unheld /etc layers: only its own, never through a symlink", async () => {
    const dataDir = join(work, "sweep");
    const imagesDir = join(dataDir, "runtime", "images");
    const parts = imageRootPartsName(store.layerIdBase);
    const defaults = defaultImageName(store.layerIdBase);
    const outside = mkdtempSync(join(work, "outside-"));
    writeFileSync(join(outside, "keep"), "host file\n");
    const made = (path: string, kind: "dir" | "file" = "dir") => {
      mkdirSync(join(imagesDir, kind === "dir" ? path : join(path, "..")), { recursive: true });
      if (kind === "file") writeFileSync(join(imagesDir, path), "x");
      else writeFileSync(join(imagesDir, path, "inside"), "x");
    };
    const stale = [
      "image-root-v1-1900000000",
      "image-root-v2-5",
      `${parts}.building-999999999`,
      "default-v3-1900000000",
      `${defaults}.building-999999999`,
      `${parts}/etc-links/${"a".repeat(32)}`,
      `${parts}/etc-links/${"b".repeat(32)}.building-999999999`,
    ];
    const kept = [`${parts}/mount-points`, `${parts}/etc-links/not-ours`, "someone-elses", "image-root-notours"];
    for (const path of [...stale, ...kept]) made(path);
    made(`${parts}/disk-10240-abc.img.building-999999999`, "file");
    made(`${defaults}/disk-10240-abc.img.building-999999999`, "file");
    made(`${parts}/disk-10240-abc.img`, "file");
    // Symlinks of our names (to a host dir): left as they are, never followed.
    symlinkSync(outside, join(imagesDir, "image-root-v0-1"));
    symlinkSync(outside, join(imagesDir, `${parts}`, "etc-links", "c".repeat(32)));
    const sweeper = createLocalRuntime({ dataDir, layers: store, warmPoolSize: 0 });
    try {
      expect(await sweeper.checkPrerequisites()).toEqual([]);
      await sweeper.cleanupLeftovers();
    } finally {
      await sweeper.close();
    }
    for (const path of stale) expect(existsSync(join(imagesDir, path)), path).toBe(false);
    for (const path of [
      `${parts}/disk-10240-abc.img.building-999999999`,
      `${defaults}/disk-10240-abc.img.building-999999999`,
    ]) {
      expect(existsSync(join(imagesDir, path)), path).toBe(false);
    }
    for (const path of [...kept, `${parts}/disk-10240-abc.img`])
      expect(existsSync(join(imagesDir, path)), path).toBe(true);
    expect(lstatSync(join(imagesDir, "image-root-v0-1")).isSymbolicLink()).toBe(true);
    expect(lstatSync(join(imagesDir, parts, "etc-links", "c".repeat(32))).isSymbolicLink()).toBe(true);
    expect(readdirSync(outside)).toEqual(["keep"]);
  });

  it("stacks an image of a hundred layers, one listed twice", async () => {
    const sb = await sandbox(images.many);
    expect(images.many.layers).toHaveLength(103);
    expect(new Set(images.many.layers).size).toBe(102);
    const r = await shIn(sb, "ls /layers | wc -l; cat /layers/0 /layers/99; ls /etc/old 2>&1; ls /opt/data");
    expect(r.out).toMatch(/^100\n0\n99\n.*No such file.*\nfrom-l2\n$/);
  });
});
