// The checks the server makes before it trusts a descriptor the agent names: a stand-in
// "agent" (a Python process on the host) opens files of every kind, and each forged or wrong
// identity must be refused, before the server opens anything it would refuse (it opens as root:
// the open of a FIFO or a device acts by itself, and a recycled pid is another process). The
// stand-in sees every open of the files it holds (inotify IN_OPEN). Runs without bubblewrap.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { linkSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { statfs } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { OpenedFileJson } from "@sbx/proto/agent";
import { RuntimeFsError } from "@sbx/server-kit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AgentFileIdentity,
  type AgentProcess,
  type AllowedFilesystems,
  fileIdentity,
  mayRead,
  ownsFile,
  processStartTime,
  reopenAgentFile,
} from "./agent-files.js";
import { openProcessStdio } from "./agent-stdio.js";
import { PositionalWriter, readPieces } from "./file-streams.js";

const OPENER = `
import ctypes, json, os, struct, sys
d = sys.argv[1]
def ident(fd):
    st = os.fstat(fd)
    return {"fd": fd, "size": str(st.st_size), "dev": str(st.st_dev), "ino": str(st.st_ino)}
out = {
  "readOnly": ident(os.open(d + "/data", os.O_RDONLY)),
  "fresh": ident(os.open(d + "/fresh", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)),
  "fifo": ident(os.open(d + "/fifo", os.O_RDWR)),
  "linked": ident(os.open(d + "/linked", os.O_WRONLY)),
  "private": ident(os.open(d + "/private", os.O_RDONLY)),
  "proc": ident(os.open("/proc/self/status", os.O_RDONLY)),
}
# Every open of these from now on (IN_OPEN), told on each line of input.
libc = ctypes.CDLL(None, use_errno=True)
watcher = libc.inotify_init1(os.O_NONBLOCK)
names = {libc.inotify_add_watch(watcher, (d + "/" + n).encode(), 0x20): n for n in ("data", "fifo")}
print(json.dumps(out), flush=True)
for _ in sys.stdin:
    seen = []
    try:
        buf = os.read(watcher, 65536)
    except BlockingIOError:
        buf = b""
    at = 0
    while at < len(buf):
        wd, mask, cookie, size = struct.unpack_from("iIII", buf, at)
        seen.append(names[wd])
        at += 16 + size
    print(json.dumps(seen), flush=True)
`;

describe("reopening the agent's files", () => {
  const dir = mkdtempSync(join(tmpdir(), "sbx-agent-files-"));
  // The opener is root: as the root of block 0 (host ids 0-65535), the files are its own.
  const me = { base: 0, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, groups: [] };
  let child: ChildProcess;
  let agent: AgentProcess;
  let files: Record<"readOnly" | "fresh" | "fifo" | "linked" | "private" | "proc", AgentFileIdentity>;
  // The sandbox's filesystems stand in as this temp dir's: the opener works on the host.
  let allowed: AllowedFilesystems;
  const data = randomBytes(3 * 1024 * 1024 + 17);
  const lines: string[] = [];
  let waiting: (() => void) | undefined;
  const nextLine = async (): Promise<string> => {
    while (lines.length === 0) {
      if (child.exitCode !== null) throw new Error("the opener exited");
      await new Promise<void>((resolve) => {
        waiting = resolve;
      });
    }
    return lines.shift() as string;
  };
  /** The stand-in's files ("data", "fifo") opened since the last look. */
  const opensSince = async (): Promise<string[]> => {
    child.stdin?.write("?\n");
    return JSON.parse(await nextLine()) as string[];
  };

  beforeAll(async () => {
    writeFileSync(join(dir, "data"), data, { mode: 0o644 });
    writeFileSync(join(dir, "linked"), "x", { mode: 0o644 });
    linkSync(join(dir, "linked"), join(dir, "linked-too"));
    writeFileSync(join(dir, "private"), "secret", { mode: 0o600 });
    execFileSync("mkfifo", [join(dir, "fifo")]);
    child = spawn("python3", ["-c", OPENER, dir], { stdio: ["pipe", "pipe", "inherit"] });
    let out = "";
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      for (let nl = out.indexOf("\n"); nl !== -1; nl = out.indexOf("\n")) {
        lines.push(out.slice(0, nl));
        out = out.slice(nl + 1);
        waiting?.();
      }
    });
    child.on("exit", () => waiting?.());
    const line = await nextLine();
    files = Object.fromEntries(
      Object.entries(JSON.parse(line) as Record<string, OpenedFileJson>).map(([k, v]) => [k, fileIdentity(v)]),
    ) as typeof files;
    const startTime = await processStartTime(child.pid ?? 0);
    if (!startTime) throw new Error("no start time");
    agent = { pid: child.pid ?? 0, startTime };
    const here = Number((await statfs(dir)).type);
    allowed = { read: new Set([here]), write: new Set([here]) };
  });

  afterAll(() => {
    child?.stdin?.end();
    child?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  const refusal = async (promise: Promise<unknown>) => {
    const error = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(RuntimeFsError);
    return (error as Error).message;
  };

  it("reads a file the agent opened for reading, from any offset", async () => {
    const handle = await reopenAgentFile(agent, files.readOnly, "read", me, allowed);
    const pieces: Uint8Array[] = [];
    // A piece is valid until the next is asked for (its buffer is reused): kept as a copy.
    for await (const piece of readPieces(handle, 5, new AbortController().signal)) pieces.push(Buffer.from(piece));
    expect(Buffer.concat(pieces).equals(data.subarray(5))).toBe(true);
  });

  it("writes the fresh file the agent created, in order, through many small pieces", async () => {
    const writer = new PositionalWriter(await reopenAgentFile(agent, files.fresh, "write", me, allowed));
    const hash = createHash("sha256");
    for (let i = 0; i < 400; i++) {
      const piece = randomBytes(32 * 1024 + i);
      hash.update(piece);
      await writer.write(piece);
    }
    await writer.close();
    expect(
      createHash("sha256")
        .update(readFileSync(join(dir, "fresh")))
        .digest("hex"),
    ).toBe(hash.digest("hex"));
  });

  it("refuses a descriptor opened for reading when asked to write", async () => {
    expect(await refusal(reopenAgentFile(agent, files.readOnly, "write", me, allowed))).toMatch(/access mode/);
  });

  it("refuses anything but a regular file (the agent's pipes)", async () => {
    expect(await refusal(reopenAgentFile(agent, files.fifo, "write", me, allowed))).toMatch(/not a regular file/);
    expect(await refusal(reopenAgentFile(agent, files.fifo, "read", me, allowed))).toMatch(/access mode/);
  });

  it("refuses a written file with another name elsewhere (a hard link)", async () => {
    expect(await refusal(reopenAgentFile(agent, files.linked, "write", me, allowed))).toMatch(/unlinked-elsewhere/);
  });

  it("refuses a written file the sandbox user does not own, and a read file it cannot read", async () => {
    const stranger = { base: 0, uid: 4242, gid: 4242, groups: [] };
    expect(await refusal(reopenAgentFile(agent, files.fresh, "write", stranger, allowed))).toMatch(/own/);
    expect(await refusal(reopenAgentFile(agent, files.private, "read", stranger, allowed))).toMatch(/not readable/);
    await (await reopenAgentFile(agent, files.readOnly, "read", stranger, allowed)).close(); // 0644: readable by all
  });

  it("refuses an identity that does not match the open file, a missing descriptor, and a recycled pid", async () => {
    expect(await refusal(reopenAgentFile(agent, { ...files.readOnly, ino: "1" }, "read", me, allowed))).toMatch(
      /answered/,
    );
    expect(await refusal(reopenAgentFile(agent, { ...files.readOnly, fd: 999 }, "read", me, allowed))).toMatch(
      /descriptor/,
    );
    expect(await refusal(reopenAgentFile({ ...agent, startTime: "1" }, files.readOnly, "read", me, allowed))).toMatch(
      /gone/,
    );
  });

  it("refuses files on other filesystems: procfs shows the host root what the sandbox may not see", async () => {
    expect(await refusal(reopenAgentFile(agent, files.proc, "read", me, allowed))).toMatch(/cannot be moved/);
    const readOnlyHere = { read: allowed.read, write: new Set<number>() };
    expect(await refusal(reopenAgentFile(agent, files.fresh, "write", me, readOnlyHere))).toMatch(/cannot be moved/);
  });

  it("opens nothing it refuses: a recycled pid, a FIFO, a wrong identity or access mode is refused before the open", async () => {
    await opensSince();
    const gone = { ...agent, startTime: "1" };
    expect(await refusal(reopenAgentFile(gone, files.readOnly, "read", me, allowed))).toMatch(/gone/);
    expect(await refusal(reopenAgentFile(agent, files.fifo, "write", me, allowed))).toMatch(/not a regular file/);
    expect(await refusal(reopenAgentFile(agent, { ...files.readOnly, ino: "1" }, "read", me, allowed))).toMatch(
      /answered/,
    );
    const nowhere = { read: new Set<number>(), write: new Set<number>() };
    expect(await refusal(reopenAgentFile(agent, files.readOnly, "read", me, nowhere))).toMatch(/cannot be moved/);
    expect(await opensSince()).toEqual([]);
    // The same pipe checks for a process's stdio (see agent-stdio.ts).
    expect(() => openProcessStdio(gone, { stdinFd: files.readOnly.fd, stdoutFd: files.readOnly.fd })).toThrow(/gone/);
    expect(() => openProcessStdio(agent, { stdinFd: files.fifo.fd, stdoutFd: files.fifo.fd })).toThrow(/not a pipe/);
    expect(await opensSince()).toEqual([]);
    // What passes every check is opened (the watch sees it).
    await (await reopenAgentFile(agent, files.readOnly, "read", me, allowed)).close();
    expect(await opensSince()).toEqual(["data"]);
  });

  it("refuses malformed answers", () => {
    for (const answer of [
      undefined,
      { fd: -1, size: "0", dev: "1", ino: "1" },
      { fd: 3, size: "-1" },
      { fd: 3, dev: "x" },
    ]) {
      expect(() => fileIdentity(answer)).toThrow(RuntimeFsError);
    }
    expect(fileIdentity({ fd: 3, size: "5", dev: "2049", ino: "18446744073709551615" }).ino).toBe(
      "18446744073709551615",
    );
  });

  it("judges reads and writes by the sandbox's whole block and the user the agent acted as", () => {
    const base = 2 ** 31 + 5 * 65_536;
    const root = { base, uid: 0, gid: 0, groups: [] };
    const app = { base, uid: 1234, gid: 1234, groups: [50] };
    // File calls act without capabilities: root's too are judged by the permission bits.
    expect(mayRead(root, base, base, 0o600)).toBe(true);
    expect(mayRead(root, base + 1234, base + 1234, 0o600)).toBe(false);
    expect(mayRead(root, base + 1234, base + 1234, 0o604)).toBe(true);
    expect(mayRead(root, base + 1234, base, 0o640)).toBe(true);
    // The host's files (unmapped owners): only when world-readable.
    expect(mayRead(root, 0, 0, 0o640)).toBe(false);
    expect(mayRead(root, 0, 0, 0o644)).toBe(true);
    // A user: owner, primary or supplementary group, other, in that order.
    expect(mayRead(app, base + 1234, base + 1234, 0o600)).toBe(true);
    expect(mayRead(app, base + 1234, base + 1234, 0o077)).toBe(false);
    expect(mayRead(app, base, base + 50, 0o640)).toBe(true);
    expect(mayRead(app, base, base + 1234, 0o604)).toBe(false);
    expect(mayRead(app, base, base, 0o600)).toBe(false);
    expect(mayRead(app, base, base, 0o604)).toBe(true);
    // Another block's files are strangers' (its root's and its user's alike).
    expect(mayRead(root, base + 65_536, base + 65_536, 0o640)).toBe(false);
    expect(mayRead(app, base + 65_536 + 1234, base + 1234, 0o600)).toBe(false);
    // An upload is the acting user's own file.
    expect(ownsFile(app, base + 1234)).toBe(true);
    expect(ownsFile(app, base)).toBe(false);
    expect(ownsFile(root, base)).toBe(true);
    expect(ownsFile(root, base + 65_536)).toBe(false);
  });
});
