import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { MEMORY_TAIL_BYTES, OutputLog } from "./output-log.js";

const dir = mkdtempSync(join(tmpdir(), "sbx-log-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function readAll(log: OutputLog, from = 0): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const chunk of log.read(from)) parts.push(chunk.data);
  return Buffer.concat(parts);
}

describe("OutputLog", () => {
  it("serves any offset, from memory and from the file once spilled", async () => {
    const log = new OutputLog(join(dir, "a.stdout"));
    const total = MEMORY_TAIL_BYTES * 3 + 12_345;
    const bytes = Buffer.alloc(total);
    for (let i = 0; i < total; i++) bytes[i] = i % 251;
    for (let at = 0; at < total; at += 10_007) log.append(bytes.subarray(at, at + 10_007));
    log.close();
    expect(log.length).toBe(total);
    expect(statSync(join(dir, "a.stdout")).size).toBe(total);
    for (const from of [0, 1, MEMORY_TAIL_BYTES, total - MEMORY_TAIL_BYTES - 1, total - 5, total]) {
      expect(Buffer.from(await readAll(log, from)).equals(bytes.subarray(from))).toBe(true);
    }
  });

  it("follows live output and ends when closed", async () => {
    const log = new OutputLog(join(dir, "b.stdout"));
    const reading = readAll(log);
    log.append(Buffer.from("one "));
    await new Promise((r) => setTimeout(r, 5));
    log.append(Buffer.from("two"));
    log.close();
    expect(Buffer.from(await reading).toString()).toBe("one two");
  });

  it("reopens a finished log from its file after a restart", async () => {
    const path = join(dir, "c.stdout");
    const first = new OutputLog(path);
    first.append(Buffer.from("kept across restarts"));
    first.close();
    const reopened = new OutputLog(path, { length: 20, closed: true });
    expect(Buffer.from(await readAll(reopened, 5)).toString()).toBe("across restarts");
  });

  it("shows readers only bytes already in the file, written in batches at the end of the turn", async () => {
    const path = join(dir, "d.stdout");
    const log = new OutputLog(path);
    // 3000 small appends in one turn: more pieces than one writev takes (IOV_MAX is 1024).
    const expected: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const line = `line ${i}\n`;
      expected.push(line);
      log.append(Buffer.from(line));
    }
    expect(log.length).toBe(0); // not written yet, so not readable yet
    expect(statSync(path).size).toBe(0);
    await new Promise((resolve) => setImmediate(resolve));
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
    log.append(Buffer.alloc(3 * 1024 * 1024, 7)); // past the batch size: written at once
    expect(log.length).toBe(size + 3 * 1024 * 1024);
    log.append(Buffer.from("tail"));
    log.close(); // writes what is pending
    await reading;
    expect(seen.at(-1)).toBe(size + 3 * 1024 * 1024 + 4);
    expect(statSync(path).size).toBe(size + 3 * 1024 * 1024 + 4);
  });
});
