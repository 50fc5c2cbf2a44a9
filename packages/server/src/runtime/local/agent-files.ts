/**
 * File contents without a detour through the agent. The agent opens a file inside the sandbox
 * (its path resolved there, with the sandbox user's permissions, so no path reaches the host)
 * and names the descriptor; the server reopens that open file through
 * `/proc/<agent's host pid>/fd/<n>` — the same file, whatever happens to its path afterwards —
 * and reads or writes it with large positional I/O (file-streams.ts).
 *
 * What makes this safe: the agent is non-dumpable (agent/main.go), so sandboxed code cannot ptrace
 * it or reach its /proc entries to swap a descriptor, and its event pipe is unlinked before any
 * sandboxed code runs. Still, the descriptor named is treated as untrusted (defence in depth): the reopened file
 * must be a regular file, opened by the agent for the access asked, with the identity the
 * answer gave; a written file must be the own file of the user the agent acted as, unlinked
 * nowhere else; a read file must be readable by that user (see `mayRead`). The agent's start
 * time is checked around the reopen, so a recycled pid is never trusted. All of it is checked
 * before the open as well as after it: the server opens nothing it would refuse.
 */
import { constants, readFileSync } from "node:fs";
import { type FileHandle, open, readFile, stat, statfs } from "node:fs/promises";
import type { OpenedFileJson } from "@sbx/proto/agent";
import { RuntimeFsError } from "@sbx/server-kit";
import { innermostPidOf } from "./proc-status.js";

/** The agent as the host sees it. */
export interface AgentProcess {
  readonly pid: number;
  /** Field 22 of /proc/<pid>/stat: with the pid, names one process for the life of the boot. */
  readonly startTime: string;
}

/**
 * Whom the agent acts as for file calls: the sandbox's user (its image's User, else root),
 * without capabilities, in ids of the sandbox, whose block of host ids starts at `base`
 * (sandbox id u is host id base + u).
 */
export interface SandboxIdentity {
  readonly base: number;
  readonly uid: number;
  readonly gid: number;
  /** Supplementary groups. */
  readonly groups: readonly number[];
}

/** The sandbox's root, as the agent is itself (no Configure: the default image). */
export const sandboxRoot = (base: number): SandboxIdentity => ({ base, uid: 0, gid: 0, groups: [] });

/** What the agent answers for a file it opened (an OpenedFile of the agent protocol). */
export interface AgentFileIdentity {
  readonly fd: number;
  readonly size: number;
  readonly dev: string;
  readonly ino: string;
}

/** Finds the agent: bubblewrap's child that is pid 1 of the sandbox's pid namespace, running as its root (`base`). */
export async function findAgent(bwrapPid: number, base: number): Promise<AgentProcess> {
  const children = (await readFile(`/proc/${bwrapPid}/task/${bwrapPid}/children`, "utf8")).trim().split(/\s+/);
  for (const child of children) {
    const pid = Number(child);
    if (!Number.isSafeInteger(pid) || pid <= 0) continue;
    const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
    const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
    if (innermostPidOf(status) !== "1" || uid !== String(base)) continue;
    const startTime = await processStartTime(pid);
    if (startTime) return { pid, startTime };
  }
  throw new RuntimeFsError("other", "the sandbox agent is not running");
}

export async function processStartTime(pid: number): Promise<string | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  return stat ? startTimeOf(stat) : undefined;
}

/** processStartTime, for callers that cannot wait. */
export function processStartTimeSync(pid: number): string | undefined {
  try {
    return startTimeOf(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return undefined;
  }
}

/** Field 22 of a /proc/<pid>/stat line, found without splitting the line (this runs twice per exec). */
function startTimeOf(stat: string): string | undefined {
  // Fields after the command name (which may hold spaces and parentheses) start at field 3.
  let start = stat.lastIndexOf(")") + 2;
  for (let field = 3; field < 22; field++) {
    start = stat.indexOf(" ", start) + 1;
    if (start === 0) return undefined;
  }
  const end = stat.indexOf(" ", start);
  return stat.slice(start, end === -1 ? undefined : end);
}

/** The identity of a file the agent opened (its answer, schema-checked), refused if malformed. */
export function fileIdentity(opened: OpenedFileJson | undefined): AgentFileIdentity {
  const fd = opened?.fd ?? 0;
  const size = Number(opened?.size ?? "0");
  const dev = opened?.dev ?? "0";
  const ino = opened?.ino ?? "0";
  if (!opened || !Number.isSafeInteger(fd) || fd < 0 || !Number.isSafeInteger(size) || size < 0) {
    throw new RuntimeFsError("other", "the sandbox agent gave a malformed answer");
  }
  if (!/^\d+$/.test(dev) || !/^\d+$/.test(ino)) {
    throw new RuntimeFsError("other", "the sandbox agent gave a malformed answer");
  }
  return { fd, size, dev, ino };
}

const refuse = (why: string) => new RuntimeFsError("other", `refused the file the sandbox agent named: ${why}`);

/**
 * Filesystems whose files the server may touch for the sandbox, by statfs type. Writes land
 * only on the sandbox's own disk (its overlay root) and tmpfs. Reads may also come from the
 * host's read-only system dirs (`readOnlyTypes`, e.g. /usr's filesystem). Never procfs, sysfs
 * and the like: what they show depends on who opens them, and the server opens as host root.
 */
export interface AllowedFilesystems {
  readonly write: ReadonlySet<number>;
  readonly read: ReadonlySet<number>;
}

const OVERLAYFS = 0x794c7630;
const TMPFS = 0x01021994;

/** The filesystems of a local sandbox: overlay and tmpfs, plus (for reads) those of `readOnlyDirs`. */
export async function sandboxFilesystems(readOnlyDirs: readonly string[]): Promise<AllowedFilesystems> {
  const extra = await Promise.all(readOnlyDirs.map(async (dir) => Number((await statfs(dir)).type)));
  return { write: new Set([OVERLAYFS, TMPFS]), read: new Set([OVERLAYFS, TMPFS, ...extra]) };
}

interface FdInfo {
  readonly accessMode: number;
  readonly mountId: string | undefined;
  readonly inode: string | undefined;
}

async function fdInfo(pid: number | "self", fd: number): Promise<FdInfo | undefined> {
  const text = await readFile(`/proc/${pid}/fdinfo/${fd}`, "utf8").catch(() => undefined);
  const flags = text && /^flags:\s+([0-7]+)$/m.exec(text)?.[1];
  if (!text || !flags) return undefined;
  return {
    accessMode: Number.parseInt(flags, 8) & 0o3, // O_ACCMODE
    mountId: /^mnt_id:\s+(\d+)$/m.exec(text)?.[1],
    inode: /^ino:\s+(\d+)$/m.exec(text)?.[1],
  };
}

const modeFits = (access: "read" | "write", mode: number) =>
  access === "write" ? mode !== constants.O_RDONLY : mode === constants.O_RDONLY;

/**
 * Whether `who` may read a file of host owner `uid`:`gid` and permission bits `perm`, as the
 * kernel decides for the agent's file calls: they act as the sandbox's user without any
 * capability (root's too), so the owner, group (primary or supplementary) or other bits
 * decide, in that order; ids are host ids, `base + id` for the sandbox's own.
 *
 * POSIX ACLs are left out, by decision: the agent's open as the user (the kernel, ACLs
 * included) is the gate; this check only stands in case the agent lies, where an ACL could
 * make it looser than the kernel (the mode's group bits show the ACL's mask, a named-user
 * entry is not seen) — and then only for the sandbox's own files on its own filesystems,
 * which sandboxed code able to make the agent lie can read itself anyway.
 */
export function mayRead(who: SandboxIdentity, uid: number, gid: number, perm: number): boolean {
  if (uid === who.base + who.uid) return (perm & 0o400) !== 0;
  const groups = [who.gid, ...who.groups].map((g) => who.base + g);
  if (groups.includes(gid)) return (perm & 0o040) !== 0;
  return (perm & 0o004) !== 0;
}

/** Whether a file the agent created for an upload is `who`'s own: its host owner is who's. */
export const ownsFile = (who: SandboxIdentity, uid: number): boolean => uid === who.base + who.uid;

/** What the server checks of a file before it opens it, and again of what it opened. */
async function checkFile(
  path: string,
  file: AgentFileIdentity,
  access: "read" | "write",
  who: SandboxIdentity,
  filesystems: AllowedFilesystems,
): Promise<void> {
  const fsType = Number((await statfs(path)).type);
  if (!(access === "write" ? filesystems.write : filesystems.read).has(fsType)) {
    throw new RuntimeFsError(
      "permission_denied",
      "files on this filesystem (such as /proc or /sys) cannot be moved through the files API; read them with exec (e.g. cat)",
    );
  }
  const st = await stat(path, { bigint: true });
  if (!st.isFile()) throw refuse("not a regular file");
  if (String(st.dev) !== file.dev || String(st.ino) !== file.ino) throw refuse("not the file it answered with");
  const perm = Number(st.mode) & 0o777;
  const uid = Number(st.uid);
  const gid = Number(st.gid);
  if (access === "write") {
    if (!ownsFile(who, uid) || st.nlink !== 1n) throw refuse("not the sandbox user's own unlinked-elsewhere file");
  } else if (!mayRead(who, uid, gid, perm)) {
    throw refuse("not readable by the sandbox user");
  }
}

/**
 * Reopens the file behind the agent's descriptor, after the checks described above. They are
 * made before the open too (stat and statfs follow `/proc/<pid>/fd/<n>` without opening it):
 * the server opens as root, and an open can act by itself (a FIFO's writer waiting for a reader
 * goes on, a device does what its open does; a recycled pid's descriptor is a host process's).
 */
export async function reopenAgentFile(
  agent: AgentProcess,
  file: AgentFileIdentity,
  access: "read" | "write",
  who: SandboxIdentity,
  filesystems: AllowedFilesystems,
): Promise<FileHandle> {
  const agentGone = async () => (await processStartTime(agent.pid)) !== agent.startTime;
  if (await agentGone()) throw refuse("the agent is gone");
  // The agent's own access mode: only a descriptor it opened for writing is written.
  const before = await fdInfo(agent.pid, file.fd);
  if (!before) throw refuse("no such descriptor");
  if (!modeFits(access, before.accessMode)) throw refuse("wrong access mode");
  const link = `/proc/${agent.pid}/fd/${file.fd}`;
  await checkFile(link, file, access, who, filesystems).catch((error: unknown) => {
    throw error instanceof RuntimeFsError ? error : refuse("no such descriptor");
  });

  // O_NONBLOCK and O_NOCTTY: should anything but the file checked be there by now.
  const flagsToOpen =
    (access === "write" ? constants.O_WRONLY : constants.O_RDONLY) | constants.O_NONBLOCK | constants.O_NOCTTY;
  const handle = await open(link, flagsToOpen).catch(() => {
    throw refuse("cannot reopen it");
  });
  try {
    if (await agentGone()) throw refuse("the agent is gone");
    // The descriptor may have been swapped between the checks above and the open: the agent's
    // must still have the access mode asked for and be the very file now open here.
    const after = await fdInfo(agent.pid, file.fd);
    const mine = await fdInfo("self", handle.fd);
    if (!after || !mine || !modeFits(access, after.accessMode)) throw refuse("the descriptor changed");
    if (after.mountId !== mine.mountId || after.inode !== mine.inode) throw refuse("the descriptor changed");
    await checkFile(`/proc/self/fd/${handle.fd}`, file, access, who, filesystems);
    return handle;
  } catch (error) {
    await handle.close();
    throw error;
  }
}
