// sb.filesystem against the real server, beyond the conformance suite (which covers every call
// and typed error on the fake and the real server alike): large files with local copies, and
// attempts to reach host files through paths and symlinks (which must all fail).
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as sdk from "@sbx/node";
import { describe, expect, it } from "vitest";
import { errorOf, realServerAvailable, useTestSandbox, useTestServer } from "./test-support.js";

const available = await realServerAvailable();

if (available) {
  describe("filesystem (real server)", () => {
    const server = useTestServer();
    const box = useTestSandbox(server);

    it("round-trips a large file in chunks with the same digest, and copies to and from local files", async () => {
      const fs = box.sandbox.filesystem;
      const size = 48 * 1024 * 1024 + 12_345;
      const data = randomBytes(size);
      const digest = createHash("sha256").update(data).digest("hex");
      // Streamed up in uneven pieces, so chunk boundaries fall anywhere.
      async function* pieces() {
        for (let at = 0; at < size; at += 3_000_001) yield data.subarray(at, at + 3_000_001);
      }
      await fs.writeStream(pieces(), "/big/file.bin");
      expect((await box.sandbox.run("sha256sum /big/file.bin")).stdout.split(" ")[0]).toBe(digest);
      const hash = createHash("sha256");
      let got = 0;
      for await (const chunk of fs.readStream("/big/file.bin")) {
        hash.update(chunk);
        got += chunk.byteLength;
      }
      expect(got).toBe(size);
      expect(hash.digest("hex")).toBe(digest);
      const rest = await (async () => {
        const parts: Uint8Array[] = [];
        for await (const chunk of fs.readStream("/big/file.bin", { offset: size - 10 })) parts.push(chunk);
        return Buffer.concat(parts);
      })();
      expect(rest.equals(data.subarray(size - 10))).toBe(true);

      const local = mkdtempSync(join(tmpdir(), "sbx-fs-local-"));
      try {
        writeFileSync(join(local, "in.bin"), data.subarray(0, 5_000_000));
        await fs.copyFromLocal(join(local, "in.bin"), "/copied/in.bin");
        expect((await fs.stat("/copied/in.bin")).size).toBe(5_000_000);
        await fs.copyToLocal("/copied/in.bin", join(local, "out", "nested", "back.bin"));
        expect(readFileSync(join(local, "out", "nested", "back.bin")).equals(data.subarray(0, 5_000_000))).toBe(true);
        expect(await errorOf(fs.copyToLocal("/copied/missing", join(local, "x")))).toBeInstanceOf(
          sdk.SandboxFilesystemNotFoundError,
        );
        expect(existsSync(join(local, "x"))).toBe(false);
      } finally {
        rmSync(local, { recursive: true, force: true });
      }
    }, 120_000);

    it("never reads or writes host files: absolute symlinks, ../ chains, symlinks swapped mid-write, hard links", async () => {
      const fs = box.sandbox.filesystem;
      // A host file the sandbox must never see or change, at a path that also exists inside.
      const hostDir = mkdtempSync(join(tmpdir(), "sbx-host-"));
      const secret = join(hostDir, "secret.txt");
      writeFileSync(secret, "HOST SECRET");
      try {
        await box.sandbox.run(
          [
            `mkdir -p /esc${hostDir}`,
            `ln -s ${secret} /esc/abs`,
            "ln -s ../../../../../../../../etc/shadow /esc/up",
            `ln -s /esc/abs /esc/chain`,
            "ln -s / /esc/root",
          ].join(" && "),
        );
        for (const path of [
          "/esc/abs",
          "/esc/chain",
          `/../../../..${secret}`,
          "/esc/root/etc/shadow",
          "/esc/up",
          "/etc/shadow",
        ]) {
          const outcome = await fs.readText(path).catch((error: unknown) => error);
          expect(outcome, path).toBeInstanceOf(sdk.SandboxFilesystemNotFoundError);
        }
        // Writing onto a symlink to a host path replaces the link (the rename does not follow it).
        await fs.writeText("from the sandbox", "/esc/abs");
        expect(readFileSync(secret, "utf8")).toBe("HOST SECRET");
        expect(await fs.stat("/esc/abs")).toMatchObject({ type: "file", size: 16 });
        await fs.writeText("through root", `/esc/root${hostDir}/other.txt`);
        expect(existsSync(join(hostDir, "other.txt"))).toBe(false);

        // A process keeps swapping /esc/race between a directory and a symlink to the host
        // path while files are written through it: every write stays inside the sandbox.
        const swapper = await box.sandbox.run(
          `while :; do rm -rf /esc/race; mkdir /esc/race; rm -rf /esc/race; ln -s ${hostDir} /esc/race; done`,
          { wait: false, timeoutMs: 0 },
        );
        for (let i = 0; i < 20; i++) {
          await fs.writeText(`race ${i}`, `/esc/race/raced-${i}.txt`).catch(() => {});
        }
        await swapper.kill();
        for (let i = 0; i < 20; i++) expect(existsSync(join(hostDir, `raced-${i}.txt`))).toBe(false);
        expect(readFileSync(secret, "utf8")).toBe("HOST SECRET");

        // Host files the sandbox can see (its /usr is the host's, read-only) cannot be hard
        // linked into its writable tree, nor written through the SDK.
        const hostTool = "/usr/bin/env";
        const before = createHash("sha256").update(readFileSync(hostTool)).digest("hex");
        const link = await box.sandbox.run(`ln ${hostTool} /esc/hard-env 2>&1`);
        expect(link.exitCode, link.stdout).not.toBe(0);
        expect(await errorOf(fs.stat("/esc/hard-env"))).toBeInstanceOf(sdk.SandboxFilesystemNotFoundError);
        expect(await errorOf(fs.writeText("overwritten", hostTool))).toBeInstanceOf(sdk.SandboxFilesystemError);
        expect(createHash("sha256").update(readFileSync(hostTool)).digest("hex")).toBe(before);
      } finally {
        rmSync(hostDir, { recursive: true, force: true });
      }
    }, 60_000);
  });
}
