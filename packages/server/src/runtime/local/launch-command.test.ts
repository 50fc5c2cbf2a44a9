// The launch's command line: what bwrap is asked to grant is the only guard on the capabilities
// of a sandbox's root (bwrap grants whatever --cap-add names, CAP_SYS_ADMIN included), so it is
// pinned here to exactly Docker's default set less NET_RAW, MKNOD and AUDIT_WRITE; and the user namespace is left for the server to
// map (the handshake descriptors), never mapped by bwrap itself.
import { describe, expect, it } from "vitest";
import { AGENT_PATH, LAUNCH_FDS, launchArgs, SANDBOX_OPEN_FILES, SANDBOX_ROOT_CAPS } from "./launch-command.js";

/** Capability numbers (linux/capability.h). */
export const CAPABILITY_NUMBERS: Readonly<Record<string, number>> = {
  CAP_CHOWN: 0,
  CAP_DAC_OVERRIDE: 1,
  CAP_DAC_READ_SEARCH: 2,
  CAP_FOWNER: 3,
  CAP_FSETID: 4,
  CAP_KILL: 5,
  CAP_SETGID: 6,
  CAP_SETUID: 7,
  CAP_SETPCAP: 8,
  CAP_LINUX_IMMUTABLE: 9,
  CAP_NET_BIND_SERVICE: 10,
  CAP_NET_BROADCAST: 11,
  CAP_NET_ADMIN: 12,
  CAP_NET_RAW: 13,
  CAP_IPC_LOCK: 14,
  CAP_IPC_OWNER: 15,
  CAP_SYS_MODULE: 16,
  CAP_SYS_RAWIO: 17,
  CAP_SYS_CHROOT: 18,
  CAP_SYS_PTRACE: 19,
  CAP_SYS_PACCT: 20,
  CAP_SYS_ADMIN: 21,
  CAP_SYS_BOOT: 22,
  CAP_SYS_NICE: 23,
  CAP_SYS_RESOURCE: 24,
  CAP_SYS_TIME: 25,
  CAP_SYS_TTY_CONFIG: 26,
  CAP_MKNOD: 27,
  CAP_LEASE: 28,
  CAP_AUDIT_WRITE: 29,
  CAP_AUDIT_CONTROL: 30,
  CAP_SETFCAP: 31,
};

const target = {
  cgroupDirs: ["/sys/fs/cgroup/x"],
  agentSharesPids: false,
  rootfs: "/data/runtime/sandboxes/s/rootfs",
  ctl: "/data/runtime/sandboxes/s/ctl",
  agent: "/data/runtime/sbx-agent",
  base: 2 ** 31 + 3 * 65_536,
  resolvConf: "/etc/resolv.conf",
  sandboxMounts: "/data/runtime/sandboxes",
};

/** The values of every occurrence of `option` in `args`. */
const valuesOf = (args: readonly string[], option: string) =>
  args.flatMap((arg, i) => (arg === option ? [args[i + 1] ?? ""] : []));

describe("the launch command", () => {
  it("grants root Docker's default capabilities less NET_RAW, MKNOD and AUDIT_WRITE, in the sandbox's user namespace only", () => {
    const mask = SANDBOX_ROOT_CAPS.reduce((m, cap) => m | (1n << BigInt(CAPABILITY_NUMBERS[cap] ?? 64)), 0n);
    // Docker's documented default set (CapEff of a container's root, 00000000a80425fb) without
    // bits 13, 27 and 29, and nothing else.
    expect(mask.toString(16).padStart(16, "0")).toBe("00000000800405fb");
    expect(0xa80425fbn & ~(1n << 13n) & ~(1n << 27n) & ~(1n << 29n)).toBe(mask);
    expect(new Set(SANDBOX_ROOT_CAPS).size).toBe(11);
    for (const never of [
      "CAP_SYS_ADMIN",
      "CAP_NET_ADMIN",
      "CAP_SYS_PTRACE",
      "CAP_SYS_MODULE",
      "CAP_DAC_READ_SEARCH",
      "CAP_NET_RAW",
      "CAP_MKNOD",
      "CAP_AUDIT_WRITE",
    ]) {
      expect(SANDBOX_ROOT_CAPS).not.toContain(never);
    }
    for (const hostUsr of [true, false]) {
      const args = launchArgs({ ...target, hostUsr });
      const bwrap = args.slice(args.indexOf("bwrap"));
      // Everything dropped first, then exactly the set added; bwrap runs as the block's base.
      expect(valuesOf(bwrap, "--cap-drop")).toEqual(["ALL"]);
      expect(bwrap.indexOf("--cap-drop")).toBeLessThan(bwrap.indexOf("--cap-add"));
      expect(valuesOf(bwrap, "--cap-add")).toEqual([...SANDBOX_ROOT_CAPS]);
      expect(args).toContain(`--reuid=${target.base}`);
      expect(args).toContain(`--regid=${target.base}`);
      expect(args).toContain("--bounding-set=-all");
    }
  });

  it("leaves the user namespace for the server to map, and binds the host's /usr only for the default image", () => {
    const withUsr = launchArgs({ ...target, hostUsr: true });
    const image = launchArgs({ ...target, hostUsr: false });
    for (const args of [withUsr, image]) {
      expect(valuesOf(args, "--info-fd")).toEqual([String(LAUNCH_FDS.info)]);
      expect(valuesOf(args, "--userns-block-fd")).toEqual([String(LAUNCH_FDS.block)]);
      expect(valuesOf(args, "--seccomp")).toEqual([String(LAUNCH_FDS.seccomp)]);
      expect(args).toContain("--unshare-user");
      expect(args).not.toContain("--userns");
      expect(valuesOf(args, "--perms")).toEqual(["1777"]);
    }
    expect(valuesOf(withUsr, "--ro-bind")).toContain("/mnt/usr");
    expect(valuesOf(withUsr, "--ro-bind-try")).toContain("/usr/bin");
    const binds = ["--bind", "--ro-bind", "--ro-bind-try"].flatMap((option) => valuesOf(image, option));
    // (and its resolv.conf from the control dir, root's: see local-sandbox.ts)
    expect(binds).toEqual(["/mnt", "/mnt/.sbx/resolv.conf"]);
  });

  it("has the agent reserve its threads at boot only where it shares the workload's pids limit", () => {
    const tail = (args: string[]) => args.slice(args.indexOf(AGENT_PATH));
    expect(tail(launchArgs({ ...target, hostUsr: false }))).toEqual([
      AGENT_PATH,
      "--open-files",
      String(SANDBOX_OPEN_FILES),
    ]);
    expect(tail(launchArgs({ ...target, hostUsr: false, agentSharesPids: true }))).toEqual([
      AGENT_PATH,
      "--open-files",
      String(SANDBOX_OPEN_FILES),
      "--reserve-threads",
    ]);
  });

  it("binds the DNS config where the root's recipe says, a plain absolute path only", () => {
    const dnsBind = (args: string[]) => {
      const at = args.indexOf("/mnt/.sbx/resolv.conf");
      return [args[at - 1], args[at + 1]];
    };
    expect(dnsBind(launchArgs({ ...target, hostUsr: false }))).toEqual(["--ro-bind", "/etc/resolv.conf"]);
    // (An image whose /etc is a symlink to usr/etc: see mount-point-layers.ts.)
    expect(dnsBind(launchArgs({ ...target, hostUsr: false, resolvConf: "/usr/etc/resolv.conf" }))).toEqual([
      "--ro-bind",
      "/usr/etc/resolv.conf",
    ]);
    for (const resolvConf of [
      "etc/resolv.conf",
      "/usr/../etc/resolv.conf",
      "/usr//resolv.conf",
      "/./resolv.conf",
      "--bind",
    ]) {
      expect(() => launchArgs({ ...target, hostUsr: false, resolvConf }), resolvConf).toThrow(
        /not a plain absolute path/,
      );
    }
  });
});
