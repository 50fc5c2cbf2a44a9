// copyToLocal's writer: pieces land in order at the right positions (short writes continued),
// a failing source or disk leaves the previous file as it was and no temporary file behind.
import { randomBytes } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { nodeLocalFiles, writeInOrder } from "./local-files.js";

/** Pieces of mixed sizes (empty, tiny, multi-MiB), some arriving after a pause. */
async function* mixed(data: Uint8Array): AsyncGenerator<Uint8Array> {
  const sizes = [0, 1, 7, 65_536, 3 * 1024 * 1024, 0, 12_345, 20 * 1024 * 1024];
  let at = 0;
  for (let i = 0; at < data.byteLength; i++) {
    const size = sizes[i % sizes.length] as number;
    yield data.subarray(at, at + size);
    at += size;
    if (i % 3 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

/** A file handle that records positional writes, taking at most `limit` bytes per call. */
function recordingHandle(limit: number, fail?: Error) {
  const file = new Uint8Array(64 * 1024 * 1024);
  let end = 0;
  let calls = 0;
  const handle = {
    async writev(pieces: Uint8Array[], position: number) {
      calls++;
      if (fail && calls > 2) throw fail;
      let written = 0;
      for (const piece of pieces) {
        const n = Math.min(piece.byteLength, limit - written);
        file.set(piece.subarray(0, n), position + written);
        written += n;
        if (written === limit) break;
      }
      end = Math.max(end, position + written);
      return { bytesWritten: written, buffers: pieces };
    },
  };
  return { handle: handle as unknown as FileHandle, bytes: () => file.subarray(0, end), calls: () => calls };
}

describe("copyToLocal's writer", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "sbx-writes-"));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it("writes 40 MiB of mixed pieces byte for byte", async () => {
    const data = randomBytes(40 * 1024 * 1024);
    await nodeLocalFiles.write(join(dir, "big.bin"), mixed(data));
    expect(Buffer.compare(await readFile(join(dir, "big.bin")), data)).toBe(0);
  });

  it("continues short writes where they stopped", async () => {
    const data = randomBytes(5 * 1024 * 1024 + 17);
    const file = recordingHandle(100_003);
    await writeInOrder(file.handle, mixed(data));
    expect(Buffer.compare(Buffer.from(file.bytes()), data)).toBe(0);
    expect(file.calls()).toBeGreaterThan(50);
  });

  it("a source that fails keeps the old file and leaves no temporary file", async () => {
    const target = join(dir, "kept.txt");
    await writeFile(target, "the old contents");
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield randomBytes(2 * 1024 * 1024);
      throw new Error("the download broke");
    }
    await expect(nodeLocalFiles.write(target, failing())).rejects.toThrow("the download broke");
    expect(await readFile(target, "utf8")).toBe("the old contents");
    expect((await readdir(dir)).filter((name) => name.includes(".sbx-"))).toEqual([]);
  });

  it("a disk that fails stops the source and reports the disk's error", async () => {
    const file = recordingHandle(Number.MAX_SAFE_INTEGER, new Error("ENOSPC: no space left on device"));
    let stopped = false;
    async function* endless(): AsyncGenerator<Uint8Array> {
      try {
        for (;;) {
          yield randomBytes(1024 * 1024);
          await new Promise((resolve) => setTimeout(resolve, 1));
        }
      } finally {
        stopped = true;
      }
    }
    await expect(writeInOrder(file.handle, endless())).rejects.toThrow("ENOSPC");
    expect(stopped).toBe(true);
  });

  it("an empty source writes an empty file", async () => {
    await nodeLocalFiles.write(join(dir, "empty.bin"), mixed(new Uint8Array(0)));
    expect((await readFile(join(dir, "empty.bin"))).byteLength).toBe(0);
  });
});
