// Two servers on one machine never hand out the same host ids: each claims its range host-wide
// (a lock on the range's bytes of one file, held by the agent binary's claim-ids while the
// server runs). A default range held by another server is given up for the next free one; a
// range given by the operator is refused, naming the holder; a claim ends with its server.
import { execFileSync, spawn } from "node:child_process";
import { closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { BLOCKED_NETWORK } from "@sbx/server-kit";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { realServerAvailable } from "../../test-support.js";
import { packagedAgent } from "./agent-binary.js";
import { claimDefaultRange, claimIdRange, type IdRangeClaim, IdRangeTakenError } from "./id-range-claim.js";
import { createLocalRuntime } from "./index.js";
import { DEFAULT_RANGE_SLOTS, defaultSandboxRangeAt, ID_BLOCK, type UidRange } from "./uid-range.js";

const available = await realServerAvailable("id range claim tests");

const overlap = (a: UidRange, b: UidRange) => a.start < b.start + b.count && b.start < a.start + a.count;

describe.runIf(available)("claims of host id ranges", () => {
  const work = mkdtempSync(join(tmpdir(), "sbx-id-claims-"));
  // A lock file of each test's own (the runtimes' test uses the host's, as servers do).
  let lock = "";
  let tests = 0;
  beforeEach(() => {
    lock = join(work, `claims-${++tests}`, "id-ranges.lock");
  });
  const agent = packagedAgent() as string;
  const held: IdRangeClaim[] = [];
  const claim = async (range: UidRange) => {
    const c = await claimIdRange(agent, range, lock);
    held.push(c);
    return c;
  };
  afterAll(() => {
    for (const c of held) c.release();
    rmSync(work, { recursive: true, force: true });
  });

  it("refuses ids another claim holds, naming it; lets them go on release", async () => {
    const first = await claim({ start: 2 ** 31, count: 4 * ID_BLOCK });
    const overlapping = { start: 2 ** 31 + 3 * ID_BLOCK, count: ID_BLOCK };
    const refused = await claimIdRange(agent, overlapping, lock).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(IdRangeTakenError);
    expect((refused as IdRangeTakenError).holder).toMatchObject({ start: 2 ** 31, count: 4 * ID_BLOCK });
    expect((refused as IdRangeTakenError).holder.pid).toBeGreaterThan(1);
    expect((refused as Error).message).toMatch(/claimed by another sbx server on this machine/);
    // Beside it: free.
    await claim({ start: 2 ** 31 + 4 * ID_BLOCK, count: ID_BLOCK });
    first.release();
    await waitUntilClaimable(overlapping);
  });

  it("holds the layer id block shared: servers may share theirs, but no range may overlap another's", async () => {
    const range = { start: 2 ** 31 + 200 * ID_BLOCK, count: 2 * ID_BLOCK };
    const layers = { start: 1_900_000_000, count: ID_BLOCK };
    held.push(await claimIdRange(agent, range, lock, layers));
    // Another server with the same layer ids and a range of its own: fine.
    held.push(await claimIdRange(agent, { start: range.start + range.count, count: ID_BLOCK }, lock, layers));
    // A range over those layer ids: refused, as over another's range.
    await expect(claimIdRange(agent, { start: layers.start, count: ID_BLOCK }, lock)).rejects.toBeInstanceOf(
      IdRangeTakenError,
    );
    // Layer ids over another's range: refused, saying so.
    const other = { start: 2 ** 31 + 300 * ID_BLOCK, count: ID_BLOCK };
    await expect(claimIdRange(agent, other, lock, { start: range.start + ID_BLOCK, count: ID_BLOCK })).rejects.toThrow(
      /the layer id block \d+-\d+ overlaps host ids claimed by another sbx server on this machine for its sandboxes/,
    );
  });

  it("moves a default range on to the next free slot, and says so when none is left", async () => {
    const slots: IdRangeClaim[] = [];
    for (let i = 0; i < DEFAULT_RANGE_SLOTS; i++) slots.push(await claimDefaultRange(agent, 7, lock));
    held.push(...slots);
    // Slot 7 first, then 8, 9, … round to 6: every slot once, none overlapping another.
    expect(slots.map((c) => c.range)).toEqual(
      Array.from({ length: DEFAULT_RANGE_SLOTS }, (_, i) => defaultSandboxRangeAt((7 + i) % DEFAULT_RANGE_SLOTS)),
    );
    await expect(claimDefaultRange(agent, 7, lock)).rejects.toThrow(
      /every default sandbox id range \(31 of them\) is claimed by another sbx server on this machine/,
    );
    for (const c of slots) c.release();
  });

  it("ends with its server: when its stdin ends, and when the server dies with the stdin still open elsewhere", async () => {
    mkdirSync(dirname(lock), { mode: 0o700 });
    for (const [n, how] of [
      [100, "stdin"],
      [101, "death"],
    ] as const) {
      const range = { start: 2 ** 31 + n * ID_BLOCK, count: ID_BLOCK };
      // A stand-in server: a shell that runs claim-ids, then is killed (SIGKILL). Its stdin is
      // the shell's (whose end this test closes), or a FIFO this test keeps open for writing:
      // then only its parent's death can end it.
      const fifo = join(work, `stdin-${n}`);
      execFileSync("mkfifo", [fifo]);
      const kept = openSync(fifo, constants.O_RDWR);
      const stdin = how === "stdin" ? "<&3" : `<"${fifo}"`;
      const server = spawn(
        "sh",
        [
          "-c",
          `exec 3<&0; "$0" claim-ids --lock "$1" --start ${range.start} --count ${range.count} ${stdin} & wait`,
          agent,
          lock,
        ],
        { stdio: ["pipe", "pipe", "ignore"] },
      );
      try {
        const said = await new Promise<string>((resolve) => {
          let out = "";
          server.stdout.on("data", (text: Buffer) => {
            out += text;
            if (out.includes("\n")) resolve(out);
          });
          server.on("close", () => resolve(out));
        });
        expect(said, how).toBe("claimed\n");
        await expect(claimIdRange(agent, range, lock)).rejects.toBeInstanceOf(IdRangeTakenError);
        server.kill("SIGKILL"); // (Node then closes its end of the shell's stdin)
        await waitUntilClaimable(range);
      } finally {
        closeSync(kept);
      }
    }
  });

  it("two runtimes forced into one slot (the same data dir) get ranges of their own; one given a held range is refused", async () => {
    const dataDir = join(work, "data");
    const [a, b] = [createLocalRuntime({ dataDir }), createLocalRuntime({ dataDir })];
    const rangeOf = (r: unknown) => (r as { sandboxIdRange: UidRange | undefined }).sandboxIdRange;
    try {
      expect(await a.checkPrerequisites()).toEqual([]);
      expect(await b.checkPrerequisites()).toEqual([]);
      const [ra, rb] = [rangeOf(a), rangeOf(b)] as [UidRange, UidRange];
      expect(ra.count).toBe(1024 * ID_BLOCK);
      expect(rb.count).toBe(1024 * ID_BLOCK);
      expect(overlap(ra, rb)).toBe(false);

      const given = createLocalRuntime({ dataDir: join(work, "given"), sandboxUids: ra });
      try {
        const problems = await given.checkPrerequisites();
        expect(problems.join("\n")).toMatch(
          new RegExp(`host ids ${ra.start}-${ra.start + ra.count - 1} are claimed by another sbx server`),
        );
        await a.close();
        await waitUntil(async () => (await given.checkPrerequisites()).length === 0);
        expect(rangeOf(given)).toEqual(ra);
      } finally {
        await given.close();
      }
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  }, 60_000);

  it("a runtime closed while a create is under way: the create fails, and nothing of it runs on ids no longer claimed", async () => {
    const runtime = createLocalRuntime({ dataDir: join(work, "closing"), warmPoolSize: 0 });
    const rangeOf = () => (runtime as unknown as { sandboxIdRange: UidRange | undefined }).sandboxIdRange;
    const countOf = () => (runtime as unknown as { sandboxCount: number }).sandboxCount;
    expect(await runtime.checkPrerequisites()).toEqual([]);
    const range = rangeOf() as UidRange;
    // (Its failure is heard from the start: it may come while close() is still under way.)
    const creating = runtime
      .createSandbox({ id: "sb-closing", env: {}, network: BLOCKED_NETWORK })
      .catch((error: unknown) => error);
    await runtime.close();
    const outcome = await creating;
    try {
      expect(outcome).toBeInstanceOf(Error);
      expect((outcome as Error).message).toMatch(/the runtime is closed/);
      expect(countOf()).toBe(0);
      // Its ids are free (the claim was let go, and no later claim was made).
      await waitUntilClaimable(range);
      await expect(runtime.checkPrerequisites()).resolves.toContainEqual(expect.stringMatching(/closed/));
    } finally {
      if (!(outcome instanceof Error)) await (outcome as { destroy(): Promise<void> }).destroy();
    }
  }, 60_000);

  it("never hands out a block some process still runs as (left by an earlier holder of the range)", async () => {
    // A range of one block, below the default ranges and the layer ids, and a process of one
    // of its uids (as a sandbox's that outlived its server).
    const range = { start: 1_700_000_000 + 7 * ID_BLOCK, count: ID_BLOCK };
    const stray = spawn("sleep", ["600"], { uid: range.start + 1000, gid: range.start + 1000, stdio: "ignore" });
    const runtime = createLocalRuntime({ dataDir: join(work, "stray"), sandboxUids: range, warmPoolSize: 0 });
    try {
      const status = `/proc/${stray.pid}/status`;
      await waitUntil(async () => existsSync(status) && readFileSync(status, "utf8").includes(`${range.start + 1000}`));
      const outcome = await runtime
        .createSandbox({ id: "sb-stray", env: {}, network: BLOCKED_NETWORK })
        .catch((error: unknown) => error);
      if (!(outcome instanceof Error)) await (outcome as { destroy(): Promise<void> }).destroy();
      expect(outcome).toBeInstanceOf(Error);
      expect((outcome as Error).message).toMatch(/all 1 sandbox id blocks are in use/);
    } finally {
      stray.kill("SIGKILL");
      await runtime.close();
    }
  }, 60_000);

  /** Retries a claim of `range` until it succeeds (a claim's end is its holder's exit: soon, not at once). */
  async function waitUntilClaimable(range: UidRange): Promise<void> {
    await waitUntil(async () => {
      try {
        held.push(await claimIdRange(agent, range, lock));
        return true;
      } catch (error) {
        if (error instanceof IdRangeTakenError) return false;
        throw error;
      }
    });
  }
});

async function waitUntil(done: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await done()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error("gave up waiting (10 s)");
}
