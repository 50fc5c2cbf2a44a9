/**
 * A server's claim on its range of host ids, host-wide: two servers on one machine must never
 * hand out the same blocks (their sandboxes would share per-uid budgets, and one's bwrap
 * would own the other's user namespaces). The claim is a write lock on the range's bytes of
 * one lock file (`ID_CLAIMS_FILE`, an id per byte), held by the agent binary's `claim-ids`
 * for as long as the server lets it: the lock ends with that process, which ends when the
 * server closes its stdin or dies, so a claim never outlives its server. A default range
 * that another server holds is given up for the next free one (31 slots); a range given by
 * the operator is refused, naming the process that holds it. The claim also holds the image
 * store's layer id block, shared (a read lock): servers may share one, but no server's
 * sandbox range may overlap another's layer ids (its sandboxes would own that server's files).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, lstatSync, mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type { Readable } from "node:stream";
import { DEFAULT_RANGE_SLOTS, defaultSandboxRangeAt, type UidRange } from "./uid-range.js";

/** The host-wide lock file of id claims (in a root-only dir of /run: gone at reboot, as the claims). */
export const ID_CLAIMS_FILE = "/run/sbx/id-ranges.lock";

/** Longest claim-ids may take to answer. */
const CLAIM_TIMEOUT_MS = 10_000;

/** A claim held; `release` lets go of it (at once, and for good). */
export interface IdRangeClaim {
  readonly range: UidRange;
  release(): void;
}

/** Another process holds ids of the range asked for. */
export class IdRangeTakenError extends Error {
  constructor(
    readonly range: UidRange,
    /** The range of the lock in the way, and the process that holds it (another server's `claim-ids`). */
    readonly holder: { readonly start: number; readonly count: number; readonly pid: number },
  ) {
    super(
      `host ids ${range.start}-${range.start + range.count - 1} are claimed by another sbx server on this machine ` +
        `(its claim: ${holder.start}-${holder.start + holder.count - 1}, held by process ${holder.pid})`,
    );
    this.name = "IdRangeTakenError";
  }
}

/** Makes the lock file's dir: root's, 0700, not a symlink. */
function ensureClaimsDir(lockFile: string): void {
  const dir = dirname(lockFile);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (!st.isDirectory() || st.uid !== 0) throw new Error(`${dir} must be a directory of root's (not a symlink)`);
  if ((st.mode & 0o777) !== 0o700) chmodSync(dir, 0o700);
}

/**
 * Claims `range` through `agent` (the agent binary's claim-ids), and `layers` (the layer id
 * block) shared; IdRangeTakenError when another holds ids of the range (as its range, or as its
 * layer ids), an Error naming the layer ids when another's range holds ids of `layers`.
 */
export async function claimIdRange(
  agent: string,
  range: UidRange,
  lockFile = ID_CLAIMS_FILE,
  layers?: UidRange,
): Promise<IdRangeClaim> {
  ensureClaimsDir(lockFile);
  const args = ["claim-ids", "--lock", lockFile, "--start", String(range.start), "--count", String(range.count)];
  if (layers) args.push("--shared-start", String(layers.start), "--shared-count", String(layers.count));
  const child = spawn(agent, args, { stdio: ["pipe", "pipe", "pipe"], env: {} });
  const answer = await firstLine(child);
  const taken = /^(taken|shared-taken) (\d+) (\d+) (-?\d+)$/.exec(answer.line);
  if (answer.line === "claimed") {
    // Held for as long as the server runs, without keeping it running.
    child.unref();
    for (const stream of [child.stdin, child.stdout, child.stderr] as (Readable | null)[]) {
      (stream as unknown as { unref?: () => void } | null)?.unref?.();
    }
    child.stdout?.destroy();
    child.stderr?.destroy();
    let released = false;
    return {
      range,
      release: () => {
        if (released) return;
        released = true;
        child.stdin?.destroy();
        child.kill("SIGKILL");
      },
    };
  }
  child.kill("SIGKILL");
  if (taken) {
    const [start, count, pid] = taken.slice(2).map(Number) as [number, number, number];
    if (taken[1] === "taken") throw new IdRangeTakenError(range, { start, count, pid });
    const block = layers as UidRange;
    throw new Error(
      `the layer id block ${block.start}-${block.start + block.count - 1} overlaps host ids claimed by another sbx server ` +
        `on this machine for its sandboxes (its claim: ${start}-${start + count - 1}, held by process ${pid}): choose another layerIdBase`,
    );
  }
  throw new Error(`cannot claim host ids ${range.start}-${range.start + range.count - 1}: ${answer.error}`);
}

/**
 * Claims a default range: the slot `first` if free, else the next free one. Fails, saying so,
 * when every slot is held by another server.
 */
export async function claimDefaultRange(
  agent: string,
  first: number,
  lockFile = ID_CLAIMS_FILE,
  layers?: UidRange,
): Promise<IdRangeClaim> {
  for (let i = 0; i < DEFAULT_RANGE_SLOTS; i++) {
    try {
      return await claimIdRange(agent, defaultSandboxRangeAt((first + i) % DEFAULT_RANGE_SLOTS), lockFile, layers);
    } catch (error) {
      if (!(error instanceof IdRangeTakenError)) throw error;
    }
  }
  throw new Error(
    `every default sandbox id range (${DEFAULT_RANGE_SLOTS} of them) is claimed by another sbx server on this machine: give this one a range of its own (sandboxUids)`,
  );
}

/** The first line claim-ids writes (with what it said on stderr, for a failure). */
function firstLine(child: ChildProcess): Promise<{ line: string; error: string }> {
  return new Promise((resolve) => {
    let out = "";
    let err = "";
    let done = false;
    const finish = (line: string, error: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ line, error });
    };
    const timer = setTimeout(() => finish("", "claim-ids did not answer"), CLAIM_TIMEOUT_MS);
    child.stdout?.setEncoding("utf8").on("data", (text: string) => {
      out += text;
      const end = out.indexOf("\n");
      if (end >= 0) finish(out.slice(0, end), "");
    });
    child.stderr?.setEncoding("utf8").on("data", (text: string) => {
      err += text;
    });
    child.on("error", (error) => finish("", error.message));
    // Ended without a whole line: what it said on stdout and stderr, both read to their end.
    child.on("close", (code, signal) =>
      finish(out.split("\n")[0] ?? "", err.trim() || `claim-ids ended (${signal ?? code})`),
    );
  });
}
