// A 2 GiB file up and down through the SDK against the real server (which runs in this same
// process), with memory sampled throughout: it must stay flat, not grow with the file.
import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { realServerAvailable, useTestSandbox, useTestServer } from "./test-support.js";

const available = await realServerAvailable();

const MiB = 1024 * 1024;
const SIZE = 2048 * MiB;

/** Samples this process's resident memory until stopped; returns the peak above the start. */
function sampleMemory(): () => number {
  const start = process.memoryUsage.rss();
  let peak = start;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 50);
  return () => {
    clearInterval(timer);
    return Math.max(peak, process.memoryUsage.rss()) - start;
  };
}

if (available) {
  describe("a 2 GiB file (real server)", () => {
    const server = useTestServer();
    const box = useTestSandbox(server);

    it("round-trips with the same digest while memory stays flat", async () => {
      const fs = box.sandbox.filesystem;
      // Made on the fly, 1 MiB at a time: a random block with the block number stamped in.
      const block = randomBytes(MiB);
      const sent = createHash("sha256");
      async function* source(): AsyncGenerator<Uint8Array> {
        for (let i = 0; i < SIZE / MiB; i++) {
          const piece = Buffer.from(block);
          piece.writeUInt32BE(i, 0);
          sent.update(piece);
          yield piece;
        }
      }
      globalThis.gc?.();
      const uploadPeak = sampleMemory();
      await fs.writeStream(source(), "/big/2g.bin"); // on the sandbox's disk, not its tmpfs
      const upload = uploadPeak();
      const digest = sent.digest("hex");
      expect((await fs.stat("/big/2g.bin")).size).toBe(SIZE);
      expect((await box.sandbox.run("sha256sum /big/2g.bin", { timeoutMs: 120_000 })).stdout.split(" ")[0]).toBe(
        digest,
      );

      const downloadPeak = sampleMemory();
      const received = createHash("sha256");
      let bytes = 0;
      for await (const chunk of fs.readStream("/big/2g.bin")) {
        received.update(chunk);
        bytes += chunk.byteLength;
      }
      const download = downloadPeak();
      expect(bytes).toBe(SIZE);
      expect(received.digest("hex")).toBe(digest);
      console.info(
        `2 GiB round trip: memory +${Math.round(upload / MiB)} MiB up, +${Math.round(download / MiB)} MiB down`,
      );
      // Client and server together hold a few chunks at a time (16 MiB uploads, pipe-sized
      // reads); a leak or a buffered file would show as gigabytes here.
      expect(upload, `upload grew memory by ${Math.round(upload / MiB)} MiB`).toBeLessThan(384 * MiB);
      expect(download, `download grew memory by ${Math.round(download / MiB)} MiB`).toBeLessThan(384 * MiB);
      await fs.remove("/big", { recursive: true });
    }, 600_000);
  });
}
