import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { ProcessSchema } from "@sbx/proto";
import { afterAll, describe, expect, it } from "vitest";
import { SqliteStateStore } from "./sqlite-store.js";
import { WalCheckpointer } from "./wal-checkpointer.js";

const work = mkdtempSync(join(tmpdir(), "sbx-state-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 600 && !condition(); i++) await new Promise((r) => setTimeout(r, 50));
  if (!condition()) throw new Error(`still not so after 30 s: ${what}`);
}

const processRecord = (i: number) =>
  create(ProcessSchema, {
    sandboxId: "sb-1",
    processId: `p${i}`,
    pid: i,
    stdoutLength: BigInt(i),
    spec: { argv: ["echo", "x".repeat(200)] },
  });

describe("SqliteStateStore", () => {
  it("checkpoints its write-ahead log off the event loop, and keeps every record across a close", async () => {
    const path = join(work, "a.db");
    const store = new SqliteStateStore(path);
    // Past SQLite's own threshold (1,000 pages): it would have checkpointed in one of these calls.
    for (let i = 0; i < 3000; i++) store.saveProcess(processRecord(i));
    expect(statSync(`${path}-wal`).size).toBeGreaterThan(1000 * 4096);
    await until(() => store.checkpoints > 0, "a checkpoint");
    // Writes after the log was checkpointed start it again from its beginning: it stops growing.
    const before = statSync(`${path}-wal`).size;
    for (let i = 0; i < 3000; i++) store.saveProcess(processRecord(i));
    expect(statSync(`${path}-wal`).size).toBeLessThanOrEqual(before);
    store.close();
    expect(statSync(`${path}-wal`, { throwIfNoEntry: false })?.size ?? 0).toBe(0);

    const reopened = new SqliteStateStore(path);
    const { processes } = reopened.load();
    expect(processes).toHaveLength(3000);
    expect(processes.find((p) => p.processId === "p2999")?.pid).toBe(2999);
    reopened.close();
  });

  it("checkpoints on the event loop when its worker cannot", async () => {
    let here = 0;
    const checkpointer = new WalCheckpointer({
      path: join(work, "no-such-dir", "x.db"), // the worker cannot open it
      checkpointHere: () => here++,
      delayMs: 10,
    });
    checkpointer.wrote();
    await until(() => here === 1, "the checkpoint done here");
    checkpointer.wrote();
    await until(() => here === 2, "the next one done here too");
    expect(checkpointer.done).toBe(2);
    checkpointer.close();
  });
});
