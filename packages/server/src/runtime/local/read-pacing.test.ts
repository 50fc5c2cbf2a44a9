// A process that writes its output one byte per write(2) must not make the server read once
// per byte (each read wakes the server and becomes a log append and a message to readers).
import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BLOCKED_NETWORK } from "@sbx/server-kit";
import { afterEach, describe, expect, it, onTestFinished, vi } from "vitest";
import { realServerAvailable, useLocalRuntime } from "../../test-support.js";
import { openFifoReader } from "./fifo.js";
import { PACE_MS, paceReads, TRICKLE_BURST } from "./read-pacing.js";

const turn = () => new Promise((resolve) => setImmediate(resolve));

/**
 * A FIFO read with paced reads, under fake timers: `write` writes to it, `chunks` is what each
 * read got. Closed and removed when the test ends.
 */
function pacedFifo() {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
  const dir = mkdtempSync(join(tmpdir(), "sbx-pacing-"));
  const fifo = join(dir, "out");
  execFileSync("mkfifo", [fifo]);
  const stream = openFifoReader(fifo);
  const writeEnd = openSync(fifo, "w"); // the read end is open: this does not block
  onTestFinished(() => {
    closeSync(writeEnd);
    stream.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  stream.pause();
  const pacing = paceReads(stream);
  const chunks: string[] = [];
  stream.on("data", (chunk: Buffer) => chunks.push(chunk.toString()));
  stream.resume();
  return { pacing, chunks, write: (text: string) => writeSync(writeEnd, text) };
}

describe("read pacing", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("a line now and then is read at once: one small read never delays the next", async () => {
    const { chunks, write } = pacedFifo();
    // Fewer small reads than a trickle's burst: each arrives without any timer firing.
    for (const line of ["one\n", "two\n", "three\n"]) {
      const before = chunks.length;
      write(line);
      for (let i = 0; i < 1000 && chunks.length === before; i++) await turn();
      expect(chunks.length).toBe(before + 1);
    }
    expect(chunks.join("")).toBe("one\ntwo\nthree\n");
  });

  it("a trickle (small reads in quick succession) is paced: then read once per PACE_MS, in one read", async () => {
    const { chunks, write } = pacedFifo();
    // One byte per read, as fast as they come: the burst is read at once, then pacing starts.
    for (let i = 0; i <= TRICKLE_BURST; i++) {
      const before = chunks.length;
      write("x");
      while (chunks.length === before) await turn();
    }
    const burst = chunks.length;
    // Paced: bytes written now, one event-loop turn apart, wait in the pipe.
    for (const byte of "bcdef") {
      write(byte);
      for (let i = 0; i < 5; i++) await turn();
    }
    expect(chunks.length).toBe(burst);
    while (chunks.join("").length < burst + 5) {
      await vi.advanceTimersByTimeAsync(PACE_MS);
      await turn();
    }
    // At most the one read made as the stream paused, then the rest at once.
    expect(chunks.slice(burst).join("")).toBe("bcdef");
    expect(chunks.length - burst).toBeLessThanOrEqual(2);
  });

  it("a held stream stays paused when the pacing timer fires, and reads again once released", async () => {
    const { pacing, chunks, write } = pacedFifo();
    write("a");
    while (chunks.length === 0) await turn();
    pacing.hold();
    write("b");
    await vi.advanceTimersByTimeAsync(PACE_MS * 3);
    for (let i = 0; i < 5; i++) await turn();
    expect(chunks).toEqual(["a"]);
    pacing.release();
    while (chunks.join("").length < 2) await turn();
    expect(chunks.join("")).toBe("ab");
  });
});

const available = await realServerAvailable("read pacing (local runtime)");

if (available) {
  describe("read pacing (local runtime)", () => {
    const local = useLocalRuntime("sbx-pacing-runtime-");

    it("a sandboxed process writing one byte at a time is read in far fewer reads than writes", async () => {
      // 3,000 one-byte writes 0.5 ms apart: read as they come, that is about one read per
      // byte; paced, a read every PACE_MS takes ~10 bytes. The bound leaves 5× slack.
      const writes = 3_000;
      const writer = `import os, time\nfor _ in range(${writes}):\n    os.write(1, b"x"); time.sleep(0.0005)`;
      const sandbox = await local.runtime.createSandbox({ id: "pacing", env: {}, network: BLOCKED_NETWORK });
      const process = await sandbox.exec({ argv: ["python3", "-c", writer], env: {}, pty: false });
      let reads = 0;
      let bytes = 0;
      process.onStdout((chunk) => {
        reads++;
        bytes += chunk.byteLength;
      });
      process.onStderr(() => {});
      expect(await process.exit).toEqual({ kind: "exited", code: 0 });
      expect(bytes).toBe(writes);
      expect(reads).toBeLessThanOrEqual(writes / 2);
    });
  });
}
