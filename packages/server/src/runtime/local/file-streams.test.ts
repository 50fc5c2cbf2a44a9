import { randomBytes } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { readPieces } from "./file-streams.js";

describe("reading a download's pieces", () => {
  /** A file handle over `bytes` whose reads fail from `failAt` on. */
  const handleOver = (bytes: Uint8Array, failAt = Number.POSITIVE_INFINITY) => {
    let closed = false;
    const handle = {
      async read(buffer: Uint8Array, offset: number, length: number, position: number) {
        await new Promise((resolve) => setTimeout(resolve, 1));
        if (position >= failAt) throw new Error("EIO: i/o error, read");
        const piece = bytes.subarray(position, position + length);
        buffer.set(piece, offset);
        return { bytesRead: piece.byteLength, buffer };
      },
      async close() {
        closed = true;
      },
    };
    return { handle: handle as unknown as FileHandle, closed: () => closed };
  };

  it("reads a file of many pieces in order, each valid until the next is asked for", async () => {
    const bytes = randomBytes(3.5 * 1024 * 1024 + 3);
    const file = handleOver(bytes);
    const copies: Buffer[] = [];
    const seen = new Set<ArrayBufferLike>();
    for await (const piece of readPieces(file.handle, 0, new AbortController().signal)) {
      copies.push(Buffer.from(piece));
      seen.add(piece.buffer);
    }
    expect(Buffer.concat(copies).equals(bytes)).toBe(true);
    expect(seen.size).toBe(2); // two buffers in turn, not one per piece
    expect(file.closed()).toBe(true);
  });

  it("a read that fails while the caller is busy is reported at the next piece (not as an unhandled rejection)", async () => {
    const file = handleOver(randomBytes(3 * 1024 * 1024), 1024 * 1024);
    const pieces = readPieces(file.handle, 0, new AbortController().signal);
    expect((await pieces.next()).value?.byteLength).toBe(1024 * 1024);
    await new Promise((resolve) => setTimeout(resolve, 50)); // the read ahead fails meanwhile
    await expect(pieces.next()).rejects.toThrow("EIO");
    expect(file.closed()).toBe(true);
  });
});
