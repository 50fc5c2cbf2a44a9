// Disk against the real server: a stream printed far past the output bound keeps only the
// bound on disk and names the first kept offset to a reader of dropped bytes; a create below
// the free-space reserve fails with QuotaExceededError; a full data dir is named as the reason
// the server cannot start (not the overlay module).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as sdk from "@sbx/node";
import { ProcessService } from "@sbx/proto";
import { describe, expect, it } from "vitest";
import { PrerequisiteError } from "./server.js";
import { errorOf, realServerAvailable, startTestServer, useTestServer } from "./test-support.js";

const available = await realServerAvailable();
const MIB = 1024 * 1024;

/** Bytes of one text chunk as the sandbox wrote them (the output here is NUL bytes: one each). */
const byteLength = (text: string) => Buffer.byteLength(text);

/** The process's info once it has ended (asked without reading its output). */
async function processEnd(server: { url: string; token: string }, sandboxId: string, processId: string) {
  const headers = { authorization: `Bearer ${server.token}` };
  const processes = createClient(ProcessService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" }));
  for (;;) {
    const waited = await processes.waitProcess({ sandboxId, processId, timeoutMs: 10_000 }, { headers });
    if (waited.done && waited.process) return waited.process;
  }
}

if (available) {
  describe("output retention (real server, 1 MiB per stream)", () => {
    const server = useTestServer({ outputRetentionMiB: 1 });

    it("never drops output a client is reading: a slow reader of an 8 MiB stream (eight times the bound) gets every byte", async () => {
      const client = new sdk.SandboxClient({ endpoint: server.url, token: server.token });
      try {
        const sb = await client.sandboxes.create();
        const total = 8 * MIB;
        const p = await sb.exec(["head", "-c", String(total), "/dev/zero"], { mode: "binary" });
        let read = 0;
        for await (const chunk of p.stdout) {
          read += chunk.byteLength;
          // A slow consumer: the producer must wait for it rather than lose bytes.
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        expect(read).toBe(total);
        expect(await p.wait()).toBe(0);
      } finally {
        await client.close();
      }
    });

    it("keeps the last MiB of a 20 MiB stream, names the first kept offset for older reads, and serves the rest", async () => {
      const client = new sdk.SandboxClient({ endpoint: server.url, token: server.token });
      try {
        const sb = await client.sandboxes.create();
        const total = 20 * MIB;
        const h = await sb.run(`head -c ${total} /dev/zero`, { wait: false });
        // Wait for the end without reading the output (so nothing keeps up with it).
        const headers = { authorization: `Bearer ${server.token}` };
        const ended = await processEnd(server, sb.id, h.commandId);
        expect(ended.stdoutLength).toBe(BigInt(total));

        // On disk: at most the bound.
        const outputDir = join(server.dataDir, "sandboxes", sb.id, "output");
        const kept = readdirSync(outputDir)
          .filter((name) => name.startsWith(`${h.commandId}.stdout`))
          .reduce((sum, name) => sum + statSync(join(outputDir, name)).size, 0);
        expect(kept).toBeLessThanOrEqual(MIB);
        expect(kept).toBeGreaterThanOrEqual(MIB * 0.8);

        const fromStart = await sb.reconnect(h.commandId, { stdoutOffset: 0 });
        const error = await errorOf(
          (async () => {
            for await (const _ of fromStart);
          })(),
        );
        expect(error).toBeInstanceOf(sdk.OutputDroppedError);
        const first = (error as sdk.OutputDroppedError).firstKeptOffset;
        expect(first).toBe(total - kept);
        expect((error as Error).message).toContain(`read from ${first}`);

        const rest = await sb.reconnect(h.commandId, { stdoutOffset: first });
        let read = 0;
        for await (const chunk of rest) {
          if (chunk.stream === "stdout") read += byteLength(chunk.data);
        }
        expect(first + read).toBe(total);

        // The raw route refuses the dropped offset too (its clients then ask ReadOutput).
        const raw = await fetch(`${server.url}/sbx.v1/output/${sb.id}/${h.commandId}/stdout?offset=0`, {
          headers,
        });
        expect(raw.status).toBe(416);
        expect(((await raw.json()) as { code: string }).code).toBe("out_of_range");

        // The server is fine.
        expect((await sb.run("echo ok")).stdout).toBe("ok\n");
        await sb.terminate();
      } finally {
        await client.close();
      }
    });
  });

  describe("free-space reserve (real server)", () => {
    // A reserve no disk has: every create finds too little free space.
    const server = useTestServer({ diskReserveMiB: 2 ** 32 });

    it("refuses creates below the reserve with QuotaExceededError naming the reserve and what is free", async () => {
      const client = new sdk.SandboxClient({ endpoint: server.url, token: server.token, maxRetries: 0 });
      try {
        const error = await errorOf(client.sandboxes.create());
        expect(error).toBeInstanceOf(sdk.QuotaExceededError);
        expect((error as Error).message).toMatch(/\d+ MiB free .* below its reserve of 4294967296 MiB/);
        // Nothing was created, and the server keeps answering.
        const listed = [];
        for await (const s of client.sandboxes.list({ includeFinished: true })) listed.push(s);
        expect(listed).toEqual([]);
      } finally {
        await client.close();
      }
    });
  });

  describe("output on a disk that runs full (real server)", () => {
    it("ends the stream with OutputLostError and the server stays up", async () => {
      // The data dir on a 48 MiB tmpfs; output may take more than that, so the disk runs full.
      const dataDir = mkdtempSync(join(tmpdir(), "sbx-filling-"));
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=48m,mode=0711", "tmpfs", dataDir]);
      let server: Awaited<ReturnType<typeof startTestServer>> | undefined;
      try {
        server = await startTestServer({ dataDir, outputRetentionMiB: 1024, diskReserveMiB: 0 });
        const client = new sdk.SandboxClient({ endpoint: server.url, token: server.token });
        try {
          const sb = await client.sandboxes.create();
          const h = await sb.run("head -c 100M /dev/zero", { wait: false });
          let read = 0;
          const error = await errorOf(
            (async () => {
              for await (const chunk of h) read += byteLength(chunk.data);
            })(),
          );
          // Named where the stream was cut: right after the last byte read (however the disk
          // filled up, and whether or not the command had ended by the time the reader got there).
          expect(error).toBeInstanceOf(sdk.OutputLostError);
          expect((error as Error).message).toMatch(/could not store .* past byte \d+ \(ENOSPC/);
          expect((error as Error).message).toContain(`past byte ${read} (`);
          expect(read).toBeGreaterThan(0);
          expect(read).toBeLessThan(100 * MIB);
          // Once the command has ended (its output final), a read resuming where this one was
          // cut hears the same, not that it asked past the end.
          await processEnd(server, sb.id, h.commandId);
          const resumed = await sb.reconnect(h.commandId, { stdoutOffset: read });
          const again = await errorOf(
            (async () => {
              for await (const _ of resumed);
            })(),
          );
          expect(again).toBeInstanceOf(sdk.OutputLostError);
          expect((again as Error).message).toContain(`past byte ${read} (`);
          // The server and the sandbox go on (the disk is still full, so only calls that need
          // no disk are sure to work).
          expect(await sb.poll()).toBeNull();
          expect((await client.sandboxes.fromId(sb.id)).id).toBe(sb.id);
          expect(await sb.terminate({ wait: true })).toBe(137);
        } finally {
          await client.close();
        }
      } finally {
        await server?.close();
        execFileSync("umount", [dataDir]);
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  });

  describe("a full data dir (real server)", () => {
    it("is named as the reason the server cannot start", async () => {
      // A tiny tmpfs with every inode and block used: an ext4 disk that ran full behaves the same.
      const dataDir = mkdtempSync(join(tmpdir(), "sbx-full-"));
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=256k,nr_inodes=32,mode=0711", "tmpfs", dataDir]);
      try {
        execFileSync("mkdir", [join(dataDir, "sandboxes")]);
        for (let i = 0; ; i++) {
          try {
            writeFileSync(join(dataDir, `filler-${i}`), "");
          } catch {
            break; // out of inodes
          }
        }
        try {
          writeFileSync(join(dataDir, "filler-0"), Buffer.alloc(MIB));
        } catch {} // out of blocks (the file keeps what fitted)
        const error = await errorOf(startTestServer({ dataDir }));
        expect(error).toBeInstanceOf(PrerequisiteError);
        expect((error as Error).message).toContain("the data dir's filesystem is full");
        expect((error as Error).message).not.toContain("modprobe");
      } finally {
        execFileSync("umount", [dataDir]);
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  });
}
