import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { OutputDroppedSchema } from "@sbx/proto";
import { afterAll, describe, expect, it } from "vitest";
import { FileOutputLog, HIGH_WATER_BYTES, MEMORY_TAIL_BYTES, type OutputWriter } from "./file-output-log.js";

const dir = mkdtempSync(join(tmpdir(), "sbx-log-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function readAll(log: FileOutputLog, from = 0): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const chunk of log.read(from)) parts.push(chunk.data);
  return Buffer.concat(parts);
}

/** What reading from `from` fails with, after the bytes it got. */
async function readFailure(log: FileOutputLog, from = 0): Promise<{ got: Uint8Array; error: ConnectError }> {
  const parts: Uint8Array[] = [];
  try {
    for await (const chunk of log.read(from)) parts.push(chunk.data);
  } catch (error) {
    return { got: Buffer.concat(parts), error: error as ConnectError };
  }
  throw new Error("expected the read to fail");
}

const pattern = (size: number) => {
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < size; i++) bytes[i] = i % 251;
  return bytes;
};

const directory = (name: string) => {
  const path = join(dir, name);
  mkdirSync(path);
  return path;
};

const enospc = () => Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });

describe("FileOutputLog", () => {
  it("serves any offset, from memory and from the file once spilled", async () => {
    const log = new FileOutputLog(join(dir, "a.stdout"));
    const total = MEMORY_TAIL_BYTES * 3 + 12_345;
    const bytes = pattern(total);
    for (let at = 0; at < total; at += 10_007) log.append(bytes.subarray(at, at + 10_007));
    log.close();
    await log.written();
    expect(log.length).toBe(total);
    expect(statSync(join(dir, "a.stdout")).size).toBe(total);
    for (const from of [0, 1, MEMORY_TAIL_BYTES, total - MEMORY_TAIL_BYTES - 1, total - 5, total]) {
      expect(Buffer.from(await readAll(log, from)).equals(bytes.subarray(from))).toBe(true);
    }
  });

  it("follows live output and ends when closed", async () => {
    const log = new FileOutputLog(join(dir, "b.stdout"));
    const reading = readAll(log);
    log.append(Buffer.from("one "));
    await new Promise((r) => setTimeout(r, 5));
    log.append(Buffer.from("two"));
    log.close();
    expect(Buffer.from(await reading).toString()).toBe("one two");
  });

  it("reopens a finished log from its file after a restart", async () => {
    const path = join(dir, "c.stdout");
    const first = new FileOutputLog(path);
    first.append(Buffer.from("kept across restarts"));
    first.close();
    await first.written();
    const reopened = FileOutputLog.restore(path);
    expect(reopened.length).toBe(20);
    expect(reopened.closed).toBe(true);
    expect(Buffer.from(await readAll(reopened, 5)).toString()).toBe("across restarts");
    expect(FileOutputLog.restore(join(dir, "never-written.stdout")).length).toBe(0);
  });

  it("shows readers only bytes already in the file, written in batches", async () => {
    const path = join(dir, "d.stdout");
    const log = new FileOutputLog(path);
    // 3000 small appends in one turn: more pieces than one writev takes (IOV_MAX is 1024).
    const expected: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const line = `line ${i}\n`;
      expected.push(line);
      log.append(Buffer.from(line));
    }
    expect(log.length).toBe(0); // not written yet, so not readable yet
    expect(existsSync(path)).toBe(false);
    await log.written();
    const size = expected.join("").length;
    expect(log.length).toBe(size);
    expect(readFileSync(path, "utf8")).toBe(expected.join(""));
    // A live reader never gets ahead of the file.
    const seen: number[] = [];
    const reading = (async () => {
      for await (const chunk of log.read(size)) {
        seen.push(chunk.offset + chunk.data.byteLength);
        expect(statSync(path).size).toBeGreaterThanOrEqual(chunk.offset + chunk.data.byteLength);
      }
    })();
    log.append(Buffer.alloc(3 * 1024 * 1024, 7));
    log.append(Buffer.from("tail"));
    log.close(); // the log ends once what is queued is written
    await reading;
    expect(seen.at(-1)).toBe(size + 3 * 1024 * 1024 + 4);
    expect(statSync(path).size).toBe(size + 3 * 1024 * 1024 + 4);
  });

  it("ends the stream with DATA_LOSS when a write fails, and never throws to the caller", async () => {
    let calls = 0;
    const failSecond: OutputWriter = async (_fd, buffers) => {
      if (++calls > 1) throw enospc();
      return buffers.reduce((sum, b) => sum + b.byteLength, 0);
    };
    const errors: Error[] = [];
    const log = new FileOutputLog(join(directory("full"), "e.stdout"), {
      write: failSecond,
      onError: (error) => errors.push(error),
    });
    log.append(Buffer.from("stored "));
    await log.written();
    const reading = readFailure(log);
    expect(log.append(Buffer.from("lost"))).toBe(true);
    await log.written(); // settles (failed) instead of rejecting
    expect(log.append(Buffer.from("ignored after the failure"))).toBe(true);
    await log.drained();
    const { got, error } = await reading;
    expect(Buffer.from(got).toString()).toBe("stored ");
    expect(error).toBeInstanceOf(ConnectError);
    expect(error.code).toBe(Code.DataLoss);
    expect(error.rawMessage).toContain("past byte 7");
    expect(error.rawMessage).toContain("ENOSPC");
    expect(errors.map((e) => (e as { code?: string }).code)).toEqual(["ENOSPC"]);
    log.close();
    expect(log.closed).toBe(true);
    expect(log.length).toBe(7);
    expect((await readFailure(log, 7)).error.code).toBe(Code.DataLoss);
  });

  it("never serves the part of a batch a short write left out, so a disk that runs full cuts the stream where readers got to", async () => {
    // A disk running full: the first write stores only part of the batch; the next one waits
    // (held by the test) and then fails. Readers running in between must see only what is stored.
    let calls = 0;
    let releaseFailure = () => {};
    const failureReleased = new Promise<void>((resolve) => {
      releaseFailure = resolve;
    });
    const shortThenFull: OutputWriter = async () => {
      if (++calls === 1) return 5;
      await failureReleased;
      throw enospc();
    };
    const log = new FileOutputLog(join(directory("short"), "s.stdout"), { write: shortThenFull });
    const live = log.read(0);
    const liveFirst = live.next(); // waiting for output
    log.append(Buffer.from("abc"));
    log.append(Buffer.from("defgh")); // one batch of two chunks; 5 of its 8 bytes get stored
    // The live reader gets the stored bytes joined, and no more.
    const first = await liveFirst;
    expect(log.length).toBe(5);
    expect(first.value?.offset).toBe(0);
    expect(Buffer.from(first.value?.data ?? []).toString()).toBe("abcde");
    // A reader inside the second chunk gets its stored part, and no more.
    const inside = log.read(3);
    const part = await inside.next();
    expect(part.value?.offset).toBe(3);
    expect(Buffer.from(part.value?.data ?? []).toString()).toBe("de");
    releaseFailure();
    await log.written();
    log.close();
    // Every reader got to the end of what is stored, and from there learns where it was cut.
    expect(log.closed).toBe(true);
    expect(log.length).toBe(5);
    for (const reader of [live, inside]) {
      const error = (await reader.next().catch((e: unknown) => e)) as ConnectError;
      expect(error).toBeInstanceOf(ConnectError);
      expect(error.code).toBe(Code.DataLoss);
      expect(error.rawMessage).toContain("past byte 5");
    }
    expect((await readFailure(log, 5)).error.code).toBe(Code.DataLoss);
  });

  it("ends the stream with DATA_LOSS when its file cannot even be created", async () => {
    const errors: Error[] = [];
    const log = new FileOutputLog(join(dir, "no-such-dir", "f.stdout"), { onError: (error) => errors.push(error) });
    log.append(Buffer.from("nowhere to go"));
    const { got, error } = await readFailure(log);
    expect(got.byteLength).toBe(0);
    expect(error.code).toBe(Code.DataLoss);
    expect(errors).toHaveLength(1);
  });

  it("keeps at most the retention bound on disk and names the first kept offset for dropped reads", async () => {
    const retentionBytes = 64 * 1024;
    const folder = directory("bounded");
    const base = join(folder, "g.stdout");
    const log = new FileOutputLog(base, { retentionBytes });
    const total = 1024 * 1024 + 777;
    const bytes = pattern(total);
    for (let at = 0; at < total; at += 3_001) {
      log.append(bytes.subarray(at, at + 3_001));
      if (at % 30_010 === 0) await log.written(); // many writes, so many segment changes
    }
    log.close();
    await log.written();
    expect(log.length).toBe(total);
    const first = log.firstKeptOffset;
    expect(total - first).toBeLessThanOrEqual(retentionBytes);
    expect(total - first).toBeGreaterThanOrEqual(retentionBytes * 0.8);
    const onDisk = readdirSync(folder).reduce((sum, name) => sum + statSync(join(folder, name)).size, 0);
    expect(onDisk).toBe(total - first);

    for (const from of [0, first - 1]) {
      const { got, error } = await readFailure(log, from);
      expect(got.byteLength).toBe(0);
      expect(error.code).toBe(Code.OutOfRange);
      expect(error.findDetails(OutputDroppedSchema)[0]?.firstKeptOffset).toBe(BigInt(first));
      expect(error.rawMessage).toContain(`read from ${first}`);
    }
    expect(Buffer.from(await readAll(log, first)).equals(bytes.subarray(first))).toBe(true);

    // A restart finds the same kept range from the file names.
    const restored = FileOutputLog.restore(base);
    expect([restored.firstKeptOffset, restored.length]).toEqual([first, total]);
    expect(Buffer.from(await readAll(restored, first + 5)).equals(bytes.subarray(first + 5))).toBe(true);
    expect((await readFailure(restored, 0)).error.code).toBe(Code.OutOfRange);
  });

  it("never drops what a live reader has yet to read: it asks the writer to wait for the reader instead", async () => {
    const retentionBytes = 64 * 1024;
    const log = new FileOutputLog(join(directory("behind"), "h.stdout"), { retentionBytes });
    const expected = pattern(10_000 + 40 * 4096);
    log.append(expected.subarray(0, 10_000));
    await log.written();
    const reader = log.read(0, undefined, 1000);
    const got: Uint8Array[] = [];
    const first = await reader.next();
    got.push((first.value as { data: Uint8Array }).data); // reading...
    // ...while the process goes on writing: once the reader lags by most of the bound, the
    // log asks for a pause (the caller stops reading the process's pipe).
    const answers: boolean[] = [];
    for (let i = 0; i < 40; i++) {
      answers.push(log.append(expected.subarray(10_000 + i * 4096, 10_000 + (i + 1) * 4096)));
      await log.written();
    }
    expect(answers.includes(false)).toBe(true);
    let drained = false;
    void log.drained().then(() => {
      drained = true;
    });
    log.close();
    // Nothing the reader has yet to read was dropped, even past the bound (the caller here
    // ignored the pause): it gets every byte, and its progress is what lets the writer on.
    for (;;) {
      const next = await reader.next();
      if (next.done) break;
      got.push(next.value.data);
    }
    expect(Buffer.concat(got).equals(expected)).toBe(true);
    expect(drained).toBe(true);
  });

  it("tells a reader arriving after the bound dropped output where the kept output starts", async () => {
    const log = new FileOutputLog(join(directory("late"), "l.stdout"), { retentionBytes: 64 * 1024 });
    for (let i = 0; i < 40; i++) {
      log.append(pattern(4096));
      await log.written();
    }
    expect(log.firstKeptOffset).toBeGreaterThan(0);
    const { error } = await readFailure(log, 0);
    expect(error.code).toBe(Code.OutOfRange);
    expect(error.findDetails(OutputDroppedSchema)[0]?.firstKeptOffset).toBe(BigInt(log.firstKeptOffset));
    // A reader that left stops holding anything back: the bound applies again.
    log.close();
  });

  it("holds no output in memory once closed", async () => {
    const log = new FileOutputLog(join(dir, "i.stdout"));
    log.append(pattern(3 * MEMORY_TAIL_BYTES));
    await log.written();
    expect(log.memoryBytes).toBeGreaterThan(0); // the tail, for live readers
    expect(log.memoryBytes).toBeLessThanOrEqual(MEMORY_TAIL_BYTES + 64 * 1024);
    log.close();
    await log.written();
    expect(log.closed).toBe(true);
    expect(log.memoryBytes).toBe(0);
    expect((await readAll(log, 0)).byteLength).toBe(3 * MEMORY_TAIL_BYTES); // from the file
  });

  it("asks the caller to stop while too much waits for a slow disk, and to go on once it drained", async () => {
    const blocked: (() => void)[] = [];
    const slowDisk: OutputWriter = (_fd, buffers) =>
      new Promise((resolve) => blocked.push(() => resolve(buffers.reduce((sum, b) => sum + b.byteLength, 0))));
    const log = new FileOutputLog(join(dir, "j.stdout"), { write: slowDisk });
    const piece = 64 * 1024;
    let accepted = 0;
    while (log.append(Buffer.alloc(piece, 1))) accepted += piece;
    expect(accepted + piece).toBeGreaterThanOrEqual(HIGH_WATER_BYTES);
    expect(log.memoryBytes).toBeLessThanOrEqual(HIGH_WATER_BYTES + piece + MEMORY_TAIL_BYTES);
    let drained = false;
    const draining = log.drained().then(() => {
      drained = true;
    });
    // Let the disk catch up, one write at a time.
    while (!drained) {
      await new Promise((resolve) => setImmediate(resolve));
      blocked.shift()?.();
    }
    await draining;
    expect(log.append(Buffer.alloc(piece, 1))).toBe(true);
    log.close();
    const finishing = log.written();
    while (!log.closed) {
      await new Promise((resolve) => setImmediate(resolve));
      blocked.shift()?.();
    }
    await finishing;
    expect(log.length).toBe(accepted + 2 * piece);
  });

  it("deletes every file of the log when removed", async () => {
    const folder = directory("removed");
    const log = new FileOutputLog(join(folder, "k.stdout"), { retentionBytes: 64 * 1024 });
    for (let i = 0; i < 10; i++) {
      log.append(pattern(10_000));
      await log.written();
    }
    expect(readdirSync(folder).length).toBeGreaterThan(1);
    log.remove();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(readdirSync(folder)).toEqual([]);
  });
});
