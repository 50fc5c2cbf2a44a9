/**
 * The server's half of a sandbox's user namespace handshake (bwrap's `--info-fd` and
 * `--userns-block-fd`, see launch-command.ts). bwrap runs unprivileged, as the sandbox's base
 * id: it makes the user namespace itself, reports the pid of its child (the process in the
 * new namespaces) and waits. The server, host root, then checks that the pid is bwrap's child
 * running as the base id, writes the namespace's maps — the sandbox's block, `0 BASE 65536`,
 * which no unprivileged process could write — and lets bwrap go on. Any failure kills the
 * launch: a sandbox never starts without its maps, and a map is never written for a process
 * that is not the one bwrap made.
 */
import type { ChildProcess } from "node:child_process";
import { closeSync, constants, fstatSync, openSync, readFileSync, statSync, writeFileSync } from "node:fs";
import type { Readable, Writable } from "node:stream";
import { LAUNCH_FDS } from "./launch-command.js";
import { ID_BLOCK } from "./uid-range.js";

/** Most bytes bwrap's report may have (it is a small JSON object). */
const MAX_INFO_BYTES = 4096;

/**
 * What the server does to the sandbox's namespaces before bwrap goes on (nothing sandboxed
 * runs yet): `pid` is bwrap's child, checked; `netnsFd` its network namespace, opened through
 * the same checked /proc dir (valid until the hook settles).
 */
export type BeforeRelease = (pid: number, netnsFd: number) => Promise<void>;

/**
 * Completes the handshake for `child` (the spawned launch, which execs its way into bwrap, so
 * bwrap's pid is the child's): resolves once the maps are written, `beforeRelease` has done its
 * part and bwrap is released. Kills the child on any failure, or when it takes longer than
 * `timeoutMs`.
 */
export async function completeUsernsHandshake(
  child: ChildProcess,
  base: number,
  timeoutMs: number,
  beforeRelease?: BeforeRelease,
): Promise<void> {
  const stdio = child.stdio as readonly (Readable | Writable | null | undefined)[];
  const info = stdio[LAUNCH_FDS.info] as Readable | null | undefined;
  const block = stdio[LAUNCH_FDS.block] as Writable | null | undefined;
  try {
    if (!info || !block) throw new Error("the launch has no handshake descriptors");
    const report = await readReport(info, timeoutMs);
    const pid = childPidOf(report);
    const launcher = child.pid;
    if (!launcher) throw new Error("the launch has no pid");
    const netns = writeMaps(pid, launcher, base);
    try {
      await beforeRelease?.(pid, netns);
    } finally {
      closeSync(netns);
    }
    // One byte lets bwrap go on; our end is then of no more use (bwrap's monitor keeps its own).
    await new Promise<void>((resolve, reject) => {
      block.once("error", reject);
      block.end("x", resolve);
    });
    block.destroy();
  } catch (error) {
    child.kill("SIGKILL");
    block?.destroy();
    throw new Error(`the user namespace handshake failed: ${(error as Error).message}`);
  } finally {
    info?.destroy();
  }
}

/** bwrap's report: everything it writes to its info descriptor before it closes it. */
function readReport(info: Readable, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    const timer = setTimeout(
      () => fail(new Error(`bwrap did not report its child within ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
    const fail = (error: Error) => {
      clearTimeout(timer);
      reject(error);
    };
    info.setEncoding("utf8");
    info.on("data", (chunk: string) => {
      text += chunk;
      if (text.length > MAX_INFO_BYTES) fail(new Error("bwrap's report is too long"));
    });
    info.on("end", () => {
      clearTimeout(timer);
      resolve(text);
    });
    info.on("error", fail);
  });
}

/** The pid bwrap reports (`{"child-pid": N}`), refused unless it is one. */
export function childPidOf(report: string): number {
  let parsed: unknown;
  try {
    parsed = JSON.parse(report);
  } catch {
    throw new Error(report.trim() ? "bwrap's report is not JSON" : "bwrap ended before it reported its child");
  }
  const pid = (parsed as Record<string, unknown> | null)?.["child-pid"];
  if (typeof pid !== "number" || !Number.isSafeInteger(pid) || pid <= 1) {
    throw new Error("bwrap's report names no child pid");
  }
  return pid;
}

/**
 * Checks that `pid` is bwrap's (`launcher`'s) child, running as `base` (all four ids), in a
 * user namespace of its own (not the server's: the maps of that one are set, and a bwrap run
 * without --unshare-user must fail here, by name), then writes its maps and opens its network
 * namespace (returned: the caller closes it), also refused when it is the server's. Everything
 * goes through one descriptor of its /proc dir, which stays bound to that process: should it
 * die and its pid be reused, every later step fails.
 */
function writeMaps(pid: number, launcher: number, base: number): number {
  const dir = openSync(`/proc/${pid}`, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    const at = (name: string) => `/proc/self/fd/${dir}/${name}`;
    const status = readFileSync(at("status"), "utf8");
    const field = (name: string) => new RegExp(`^${name}:\\s+(.*)$`, "m").exec(status)?.[1]?.trim().split(/\s+/);
    if (field("PPid")?.[0] !== String(launcher)) throw new Error(`process ${pid} is not bwrap's child`);
    for (const ids of ["Uid", "Gid"]) {
      const values = field(ids);
      if (values?.length !== 4 || values.some((v) => v !== String(base))) {
        throw new Error(`process ${pid} does not run as ${base}`);
      }
    }
    const theirs = statSync(at("ns/user"));
    const ours = statSync("/proc/self/ns/user");
    if (theirs.dev === ours.dev && theirs.ino === ours.ino) {
      throw new Error(`process ${pid} is in the server's own user namespace, not a new one`);
    }
    // One write each (a map is written once, whole); setgroups stays allowed, so the
    // sandbox's root may set groups (su, initgroups, the agent's users).
    const map = `0 ${base} ${ID_BLOCK}\n`;
    writeFileSync(at("uid_map"), map);
    writeFileSync(at("gid_map"), map);
    const netns = openSync(at("ns/net"), constants.O_RDONLY);
    const theirNet = fstatSync(netns);
    const ourNet = statSync("/proc/self/ns/net");
    if (theirNet.dev === ourNet.dev && theirNet.ino === ourNet.ino) {
      closeSync(netns);
      throw new Error(`process ${pid} is in the server's own network namespace, not a new one`);
    }
    return netns;
  } finally {
    closeSync(dir);
  }
}
