/**
 * The server's own open-files limit, raised at start: every connection, sandbox pipe and file
 * costs a descriptor, and running out makes real clients fail with EMFILE. Node can only
 * raise the soft limit to the hard one (it does so at start) and has no setrlimit, so the
 * hard limit is raised with util-linux's `prlimit` on our own pid (root may; others keep
 * what they have).
 */
import { execFileSync } from "node:child_process";

/** What the server asks for (a floor: a higher limit is kept). */
export const WANTED_OPEN_FILES = 65_536;

export interface OpenFilesLimit {
  /** The soft limit now in force. */
  readonly limit: number;
  /** The soft limit before, when it was raised. */
  readonly raisedFrom?: number;
  /** Why it could not be raised to `wanted`, when it could not. */
  readonly problem?: string;
}

const prlimit = (...args: string[]) =>
  execFileSync("prlimit", ["--pid", String(process.pid), ...args], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });

function currentLimits(): { soft: number; hard: number } {
  const [soft, hard] = prlimit("--nofile", "--raw", "--noheadings", "--output=SOFT,HARD")
    .trim()
    .split(/\s+/)
    .map((text) => (text === "unlimited" ? Number.POSITIVE_INFINITY : Number(text)));
  if (soft === undefined || hard === undefined || Number.isNaN(soft) || Number.isNaN(hard)) {
    throw new Error("unexpected prlimit output");
  }
  return { soft, hard };
}

export function raiseOpenFilesLimit(wanted = WANTED_OPEN_FILES): OpenFilesLimit {
  let before: { soft: number; hard: number };
  try {
    before = currentLimits();
  } catch (error) {
    return { limit: Number.NaN, problem: `cannot read it with prlimit: ${messageOf(error)}` };
  }
  if (before.soft >= wanted) return { limit: before.soft };
  const hard = Math.max(wanted, before.hard);
  try {
    prlimit(`--nofile=${wanted}:${Number.isFinite(hard) ? hard : "unlimited"}`);
    const after = currentLimits();
    return { limit: after.soft, raisedFrom: before.soft };
  } catch (error) {
    return { limit: before.soft, problem: `cannot raise it to ${wanted} with prlimit: ${messageOf(error)}` };
  }
}

function messageOf(error: unknown): string {
  const stderr = (error as { stderr?: unknown }).stderr;
  if (typeof stderr === "string" && stderr.trim()) return stderr.trim();
  return error instanceof Error ? error.message : String(error);
}
