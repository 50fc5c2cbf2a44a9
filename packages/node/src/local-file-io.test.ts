// Local file I/O for copyToLocal / copyFromLocal. The writer: pieces land in order at the right
// positions (short writes continued), a failing source or disk leaves the previous file as it
// was and no temporary file behind. The reader: two buffers in turn, and uploads built from
// them (copied, since a piece is valid only until the next) arrive byte for byte.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SandboxClient as CoreClient, type LocalSandbox } from "@sbx/core";
import { type LocalFiles, localFilesystems } from "@sbx/core/adapter";
import { connectClients } from "@sbx/core/connect";
import { createFakeServer } from "@sbx/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SandboxClient } from "./client.js";
import { nodeLocalFiles, writeInOrder } from "./local-files.js";
import { nodeRawHttp } from "./raw-http-client.js";
import { createNodeTransport } from "./transport.js";

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

/** Uploads the client's local file "in" to `path` in a new sandbox; the bytes that arrived. */
async function copiedFromLocal(client: CoreClient<LocalSandbox>, path: string): Promise<Buffer> {
  const sb = await client.sandboxes.create();
  try {
    await sb.filesystem.copyFromLocal("in", path);
    return Buffer.from(await sb.filesystem.readBytes(path));
  } finally {
    await sb.terminate();
  }
}

describe("copyFromLocal's reader", () => {
  const fake = createFakeServer();
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "sbx-reads-"));
  });
  afterAll(async () => {
    await fake.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("reads a file in 1 MiB pieces from two buffers in turn", async () => {
    const data = randomBytes(3.5 * 1024 * 1024 + 3);
    await writeFile(join(dir, "in.bin"), data);
    const copies: Buffer[] = [];
    const buffers = new Set<ArrayBufferLike>();
    for await (const piece of nodeLocalFiles.read(join(dir, "in.bin"))) {
      expect(piece.byteLength).toBeLessThanOrEqual(1024 * 1024);
      copies.push(Buffer.from(piece));
      buffers.add(piece.buffer);
    }
    expect(Buffer.compare(Buffer.concat(copies), data)).toBe(0);
    expect(buffers.size).toBe(2);
  });

  it("reads a pipe (a FIFO) as well as a file", async () => {
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    const data = randomBytes(3 * 1024 * 1024 + 1);
    const writing = writeFile(fifo, data);
    const copies: Buffer[] = [];
    for await (const piece of nodeLocalFiles.read(fifo)) copies.push(Buffer.from(piece));
    await writing;
    expect(Buffer.compare(Buffer.concat(copies), data)).toBe(0);
  });

  it("a missing file or a directory fails as Node's fs does", async () => {
    const drain = async (path: string) => {
      for await (const _ of nodeLocalFiles.read(path));
    };
    await expect(drain(join(dir, "missing.bin"))).rejects.toThrow("ENOENT");
    await expect(drain(dir)).rejects.toThrow("EISDIR");
  });

  it("copyFromLocal of 40 MiB arrives byte for byte", async () => {
    const data = randomBytes(40 * 1024 * 1024 + 5);
    await writeFile(join(dir, "big.bin"), data);
    await using client = new SandboxClient({ transport: fake.transport });
    const sb = await client.sandboxes.create();
    await sb.filesystem.copyFromLocal(join(dir, "big.bin"), "/tmp/big.bin");
    expect(Buffer.compare(Buffer.from(await sb.filesystem.readBytes("/tmp/big.bin")), data)).toBe(0);
    await sb.terminate();
  });

  it("copyFromLocal copies each piece before asking for the next (a reader may reuse one buffer)", async () => {
    const data = randomBytes(9 * 1024 * 1024 + 11);
    // The worst a reader may do: one buffer, overwritten with garbage as soon as the next piece is asked for.
    const oneBuffer: LocalFiles = {
      async *read() {
        const buffer = new Uint8Array(300_000);
        for (let at = 0; at < data.byteLength; at += buffer.byteLength) {
          const piece = data.subarray(at, at + buffer.byteLength);
          buffer.set(piece);
          yield buffer.subarray(0, piece.byteLength);
          buffer.fill(0xee);
        }
      },
      write: nodeLocalFiles.write,
    };
    await using client = new CoreClient<LocalSandbox>(
      { transport: fake.transport },
      { connectClients, localFilesystem: localFilesystems(oneBuffer) },
    );
    expect(Buffer.compare(await copiedFromLocal(client, "/tmp/one.bin"), data)).toBe(0);
  });

  it("copyFromLocal to a server without raw routes switches to WriteFile mid-upload, byte for byte", async () => {
    // 10 MiB pieces with pauses: the third 16 MiB upload chunk starts with 8 MiB in hand when
    // the first raw PUT learns that the server has no raw route (WriteFile chunks are 4 MiB).
    const data = randomBytes(48 * 1024 * 1024 + 5);
    const slow: LocalFiles = {
      async *read() {
        for (let at = 0; at < data.byteLength; at += 10 * 1024 * 1024) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          yield data.subarray(at, at + 10 * 1024 * 1024);
        }
      },
      write: nodeLocalFiles.write,
    };
    const listener = await fake.listen();
    try {
      await using client = new CoreClient<LocalSandbox>(
        { endpoint: listener.url },
        {
          createClients: (endpoint) => connectClients(createNodeTransport(endpoint)),
          createRawHttp: nodeRawHttp,
          localFilesystem: localFilesystems(slow),
        },
      );
      expect(Buffer.compare(await copiedFromLocal(client, "/tmp/fallback.bin"), data)).toBe(0);
    } finally {
      await listener.close();
    }
  });
});
