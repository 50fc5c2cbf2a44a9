/**
 * The command line that starts a sandbox, from the host's `/bin/sh` down to its agent as pid 1:
 *
 *   sh (joins the cgroup) → unshare + sh (a private mount namespace where the root and the
 *     control dir are bound on /mnt, see LAUNCH_SCRIPT) → setpriv (drops to the sandbox's
 *     base id, the first of its block, no caps) → bwrap (new user/pid/mount/ipc/uts/net/cgroup
 *     namespaces, seccomp, no_new_privs; the server gives the network namespace its link
 *     during the user namespace handshake, see network/host-network.ts)
 *       → the agent (/.sbx/agent, a static binary bound read-only) as pid 1, which starts
 *         every process of the sandbox.
 *
 * bwrap makes the user namespace itself (unprivileged: it is owned by the sandbox's base id,
 * and bwrap's own process stays in the host's namespace with no capabilities), then waits on
 * its block fd while the server, host root, writes the namespace's maps: `0 BASE 65536` (see
 * userns-handshake.ts). Root inside holds Docker's default capabilities less three it has
 * no use for, in that namespace only, never more (SANDBOX_ROOT_CAPS).
 */
import { DEFAULT_IMAGE_ENV } from "@sbx/server-kit";
import { USR_DIRS } from "./image.js";

/**
 * Where bwrap finds the sandbox's root: in the launcher's private mount namespace the root is
 * bound here (any existing dir every user may traverse; what it holds on the host is hidden
 * only in that namespace). bwrap resolves its paths as the unprivileged sandbox uid, and the
 * layers' own dir is root's (0700).
 */
export const LAUNCH_ROOT = "/mnt";

/** Where the agent is, inside the sandbox. */
export const AGENT_PATH = "/.sbx/agent";

/** The sandbox's resolv.conf in its control dir (bound over /etc/resolv.conf). */
export const RESOLV_CONF_PATH = "/.sbx/resolv.conf";

/**
 * Run as root in the private mount namespace: $1 the sandbox's root, $2 its control dir (root's,
 * with an empty file `agent` to mount on), $3 the agent binary (root's), $4 the mount holding
 * every sandbox's disk and root (see LaunchTarget.sandboxMounts); then the rest
 * (setpriv … bwrap …). Nothing here reaches the host. The control dir stays noexec; the agent
 * is bound on its own, read-only (and so is every mount of it bwrap makes): sandboxed code can
 * run it but neither write, replace nor unmount it (its mounts are locked in the sandbox's user
 * namespace, and root's dir holds the name). The namespace is a copy of the host's mount table,
 * kept for the sandbox's life by bwrap's own process: the other sandboxes' mounts are let go of
 * in it, or each sandbox would hold a copy of all the others' (memory growing with the square
 * of their number).
 */
const LAUNCH_SCRIPT = `set -e
mount --bind "$1" ${LAUNCH_ROOT}
mount --bind -o nosuid,nodev,noexec "$2" ${LAUNCH_ROOT}/.sbx
mount --bind -o ro,nosuid,nodev "$3" ${LAUNCH_ROOT}${AGENT_PATH}
umount -l "$4"
shift 4
exec "$@"`;

/** Sandboxes' soft open-files limit (see launchArgs). */
export const SANDBOX_OPEN_FILES = 1024;

/**
 * The capabilities root holds inside a sandbox, in its user namespace only: Docker's default
 * set (moby's `DefaultCapabilities`) without the three that give nothing here but kernel
 * surface, as Podman's defaults leave them out: NET_RAW (raw inet sockets; a sandbox has
 * loopback only), MKNOD (no device node can be made in a user namespace other than the
 * host's) and AUDIT_WRITE (the kernel refuses audit messages from one). bwrap grants whatever
 * `--cap-add` names, even CAP_SYS_ADMIN, so this list is the only guard: never add
 * sys_admin, net_admin, sys_ptrace, sys_module, dac_read_search, or any other (a test pins it).
 */
export const SANDBOX_ROOT_CAPS = Object.freeze([
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
] as const);

/** Descriptors of the launch: bwrap reads its seccomp program from one, and does the user namespace handshake on two. */
export const LAUNCH_FDS = Object.freeze({
  /** The seccomp program (`--seccomp`). */
  seccomp: 3,
  /** bwrap writes `{"child-pid": N}` here, then closes it (`--info-fd`). */
  info: 5,
  /** bwrap waits for a byte (or end-of-file) here before it goes on (`--userns-block-fd`). */
  block: 6,
});

/** What one launch needs to know of its sandbox. */
export interface LaunchTarget {
  /** The sandbox's cgroup dirs (one per hierarchy), joined before anything else runs. */
  readonly cgroupDirs: readonly string[];
  /**
   * The agent shares the workload's pids limit (no `work` cgroup, see cgroups.ts): it reserves
   * the threads it may need at boot.
   */
  readonly agentSharesPids: boolean;
  /** The sandbox's overlay root on the host. */
  readonly rootfs: string;
  /** The sandbox's control dir on the host (root's, holding the FIFOs and the agent's mount point). */
  readonly ctl: string;
  /** The agent binary on the host (root's, see agent-binary.ts). */
  readonly agent: string;
  /** The first host id of the sandbox's block: its root, bwrap's uid and gid. */
  readonly base: number;
  /** Bind the host's /usr subtrees read-only over /usr (the default image; see sandbox-root.ts). */
  readonly hostUsr: boolean;
  /**
   * Where the sandbox's DNS config is bound: a real file of the root at a path with no symlink
   * in it (RootRecipe.resolvConf; `/etc/resolv.conf` unless an image's /etc is a symlink).
   */
  readonly resolvConf: string;
  /**
   * The mount point under which every sandbox's disk and root are mounted (the runtime's
   * sandboxes dir, bound on itself): unmounted, with all under it, in the launch's namespace.
   */
  readonly sandboxMounts: string;
}

/**
 * The arguments of `/bin/sh` that launch a sandbox. The seccomp program is read from
 * descriptor 3 (see `--seccomp`); the user namespace handshake takes descriptors 5 and 6
 * (LAUNCH_FDS).
 */
export function launchArgs({
  cgroupDirs,
  agentSharesPids,
  rootfs,
  ctl,
  agent,
  base,
  hostUsr,
  resolvConf,
  sandboxMounts,
}: LaunchTarget): string[] {
  // (An absolute path of plain names: nothing of it can climb, nor be read as an option.)
  const parts = resolvConf.split("/");
  if (parts[0] !== "" || parts.slice(1).some((part) => part === "" || part === "." || part === "..")) {
    throw new Error(`the DNS config's mount point ${JSON.stringify(resolvConf)} is not a plain absolute path`);
  }
  const bwrap = [
    "bwrap",
    "--unshare-user",
    "--info-fd",
    String(LAUNCH_FDS.info),
    "--userns-block-fd",
    String(LAUNCH_FDS.block),
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-net",
    "--unshare-cgroup-try",
    "--uid",
    "0",
    "--gid",
    "0",
    "--hostname",
    "sandbox",
    "--die-with-parent",
    "--new-session",
    "--cap-drop",
    "ALL",
    ...SANDBOX_ROOT_CAPS.flatMap((cap) => ["--cap-add", cap]),
    // The root with /.sbx and its agent already bound in (see LAUNCH_SCRIPT).
    "--bind",
    LAUNCH_ROOT,
    "/",
    ...(hostUsr ? hostUsrBinds() : []),
    // Its DNS (the gateway's forwarder), bound read-only over the image's own (which stays as it
    // is underneath), as Docker does: a file of the control dir, root's (see local-sandbox.ts).
    // The mount point is always a real file of ours at a path with no symlink in it: the
    // default image's disk has /etc/resolv.conf, and an image's root has a mount-point layer on
    // top with real dirs down to it (mount-point-layers.ts; where an image's /etc symlink leads,
    // image-etc.ts): bwrap would otherwise make or open one through an image's symlink, on the host.
    "--ro-bind",
    `${LAUNCH_ROOT}${RESOLV_CONF_PATH}`,
    resolvConf,
    "--proc",
    "/proc",
    "--dev",
    "/dev",
    // Writable by every user of the sandbox, sticky (bwrap's tmpfs is 0755 otherwise).
    "--perms",
    "1777",
    "--tmpfs",
    "/tmp",
    "--chdir",
    "/",
    "--clearenv",
    "--setenv",
    "PATH",
    DEFAULT_IMAGE_ENV.PATH as string,
    "--seccomp",
    String(LAUNCH_FDS.seccomp),
    "--as-pid-1",
    AGENT_PATH,
    // Go raises its own soft limit as it starts: the agent sets the sandbox's back.
    "--open-files",
    String(SANDBOX_OPEN_FILES),
    ...(agentSharesPids ? ["--reserve-threads"] : []),
  ];
  // Nothing runs outside its cgroups: destroy() relies on killing the cgroup to know that no
  // sandboxed process is left before it removes the sandbox's files. Sandboxes get the usual
  // soft open-files limit back (the server raised its own, see open-files-limit.ts): 1024, as
  // systemd gives services, because select() and programs that walk every possible descriptor
  // break or crawl with more; the hard limit stays, so a program that wants more can ask.
  const join_cgroups = `ulimit -S -n ${SANDBOX_OPEN_FILES} 2>/dev/null; for d in "$@"; do case "$d" in --) shift; break;; esac; echo $$ > "$d/cgroup.procs" || exit 1; shift; done; exec "$@"`;
  return [
    "-c",
    join_cgroups,
    "sbx-launch",
    ...cgroupDirs,
    "--",
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "/bin/sh",
    "-c",
    LAUNCH_SCRIPT,
    "sbx-mount",
    rootfs,
    ctl,
    agent,
    sandboxMounts,
    "setpriv",
    `--reuid=${base}`,
    `--regid=${base}`,
    "--clear-groups",
    "--inh-caps=-all",
    "--bounding-set=-all",
    ...bwrap,
  ];
}

/**
 * The default image's /usr: read-only (EROFS, as the host's /usr it mostly is), but for the
 * sandbox's own /usr/local from its layer; its allowlisted subtrees come from the host.
 */
function hostUsrBinds(): string[] {
  return ["--ro-bind", `${LAUNCH_ROOT}/usr`, "/usr", ...usrBinds(), "--bind", `${LAUNCH_ROOT}/usr/local`, "/usr/local"];
}

/** bwrap arguments binding the allowlisted subtrees of the host's /usr read-only (see image.ts). */
export function usrBinds(): string[] {
  return USR_DIRS.flatMap((d) => ["--ro-bind-try", `/usr/${d}`, `/usr/${d}`]);
}
