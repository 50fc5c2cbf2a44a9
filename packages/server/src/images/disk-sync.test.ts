/**
 * The store's disk syncs against its records (no registry, no root needed): what a sync
 * marks is what was recorded before it started, never a layer recorded while it ran (deleted
 * and pulled again included); a failed sync marks nothing and is tried again by itself; delays
 * past Node's 32-bit timer limit wait their whole length.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { DiskSync, syncFileSystem } from "./disk-sync.js";
import { ImageDb } from "./image-db.js";
import { MAX_TIMER_MS } from "./long-timer.js";

const work = mkdtempSync(join(tmpdir(), "sbx-disk-sync-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const layer = (n: number) => `sha256:${String(n).repeat(64).slice(0, 64)}`;

/** A sync the test lets finish (or fail), one call at a time. */
function heldSyncs() {
  const calls: { finish: (error?: Error) => void }[] = [];
  let called: (() => void) | undefined;
  const sync = () =>
    new Promise<void>((resolve, reject) => {
      calls.push({ finish: (error) => (error ? reject(error) : resolve()) });
      called?.();
    });
  /** Resolves once the sync has been called `n` times. */
  const callNumber = async (n: number) => {
    while (calls.length < n) {
      await new Promise<void>((resolve) => {
        called = resolve;
      });
    }
    return calls[n - 1] as { finish: (error?: Error) => void };
  };
  return { sync, callNumber };
}

describe("disk sync", () => {
  const dbs: ImageDb[] = [];
  const syncs: DiskSync[] = [];
  afterEach(() => {
    for (const sync of syncs.splice(0)) sync.close();
    for (const db of dbs.splice(0)) db.close();
    vi.useRealTimers();
  });

  function open(sync: (dir: string) => Promise<void>, delayMs = 0) {
    const db = new ImageDb(join(mkdtempSync(join(work, "store-")), "images.db"));
    dbs.push(db);
    const marks: number[] = [];
    const disk = new DiskSync({
      dir: work,
      delayMs,
      mark: () => db.layerSeq(),
      synced: (mark) => {
        db.markSynced(mark);
        marks.push(mark);
      },
      sync,
    });
    syncs.push(disk);
    const unsynced = () =>
      db
        .layers()
        .filter((l) => !synced(db, l.diffId))
        .map((l) => l.diffId);
    return { db, disk, marks, unsynced };
  }

  const synced = (db: ImageDb, diffId: string) => !db.unsyncedFromOtherBoots("another boot").includes(diffId);

  it("marks only the layers recorded before the sync started: not one deleted and recorded again meanwhile", async () => {
    const held = heldSyncs();
    const { db, disk, marks, unsynced } = open(held.sync);
    db.saveLayer(layer(1), 10, "boot");
    db.saveLayer(layer(2), 10, "boot");
    disk.request();
    const first = await held.callNumber(1);
    // While the sync runs: layer 2's image is deleted, then pulled again (its files made
    // anew, after the sync began), and another layer comes.
    db.deleteLayer(layer(2));
    db.saveLayer(layer(2), 10, "boot");
    db.saveLayer(layer(3), 10, "boot");
    disk.request();
    first.finish();
    const second = await held.callNumber(2);
    expect(marks).toHaveLength(1);
    expect(unsynced().sort()).toEqual([layer(2), layer(3)]);
    second.finish();
    while (marks.length < 2) await new Promise((resolve) => setImmediate(resolve));
    expect(unsynced()).toEqual([]);
  });

  it("marks nothing when the sync fails, and tries it again by itself", async () => {
    const held = heldSyncs();
    const { db, disk, marks, unsynced } = open(held.sync);
    db.saveLayer(layer(1), 10, "boot");
    disk.request();
    (await held.callNumber(1)).finish(new Error("sync -f: Input/output error"));
    const again = await held.callNumber(2);
    expect(marks).toEqual([]);
    expect(unsynced()).toEqual([layer(1)]);
    again.finish();
    while (marks.length === 0) await new Promise((resolve) => setImmediate(resolve));
    expect(unsynced()).toEqual([]);
  });

  it("syncs a real file system, and fails for a dir that is not there (sync -f's exit status)", async () => {
    await syncFileSystem(work);
    await expect(syncFileSystem(join(work, "missing"))).rejects.toThrow();
  });

  it("waits the whole delay when it is past Node's 32-bit timer limit", async () => {
    vi.useFakeTimers();
    let calls = 0;
    const { db, disk } = open(async () => {
      calls++;
    }, MAX_TIMER_MS + 5_000);
    db.saveLayer(layer(1), 10, "boot");
    disk.request();
    await vi.advanceTimersByTimeAsync(MAX_TIMER_MS);
    expect(calls).toBe(0);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(calls).toBe(1);
  });
});
