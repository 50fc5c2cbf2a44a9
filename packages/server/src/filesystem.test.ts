// sb.filesystem against the real server: every call, its typed errors, large files, and
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

    it("writes and reads text and bytes, creating parents and replacing files (keeping their mode)", async () => {
      const fs = box.sandbox.filesystem;
      await fs.writeText("héllo\n", "/work/a/b/hello.txt");
      expect(await fs.readText("/work/a/b/hello.txt")).toBe("héllo\n");
      expect((await box.sandbox.run("cat /work/a/b/hello.txt")).stdout).toBe("héllo\n");
      const bytes = new Uint8Array([0, 1, 2, 255, 254]);
      await fs.writeBytes(bytes, "/work/data.bin");
      expect(Array.from(await fs.readBytes("/work/data.bin"))).toEqual(Array.from(bytes));
      await fs.writeBytes(new Uint8Array(0), "/work/empty");
      expect((await fs.readBytes("/work/empty")).byteLength).toBe(0);
      await box.sandbox.run("chmod 750 /work/a/b/hello.txt");
      await fs.writeText("replaced", "/work/a/b/hello.txt");
      expect(await fs.readText("/work/a/b/hello.txt")).toBe("replaced");
      expect((await fs.stat("/work/a/b/hello.txt")).mode).toBe(0o750);
      // LangSmith's read/write.
      await box.sandbox.write("/work/ls.txt", "from write");
      expect(new TextDecoder().decode(await box.sandbox.read("/work/ls.txt"))).toBe("from write");
      await box.sandbox.write("/work/ls.bin", new Uint8Array([7]));
      expect(Array.from(await box.sandbox.read("/work/ls.bin"))).toEqual([7]);
      // No temporary files are left beside what was written.
      expect((await fs.listFiles("/work")).map((e) => e.name)).toEqual(["a", "data.bin", "empty", "ls.bin", "ls.txt"]);
    });

    it("lists, stats (symlinks described, not followed), makes and removes directories", async () => {
      const fs = box.sandbox.filesystem;
      await box.sandbox.run(
        "mkdir -p /t/dir && printf 12345 > /t/file && ln -s /t/file /t/link && ln -s /nowhere /t/dangling",
      );
      const entries = await fs.listFiles("/t");
      expect(entries.map((e) => [e.name, e.type])).toEqual([
        ["dangling", "symlink"],
        ["dir", "directory"],
        ["file", "file"],
        ["link", "symlink"],
      ]);
      const file = entries.find((e) => e.name === "file");
      expect(file).toMatchObject({ path: "/t/file", size: 5, mode: 0o644 });
      expect(Math.abs((file?.mtimeMs ?? 0) - Date.now())).toBeLessThan(60_000);
      expect(await fs.stat("/t/link")).toMatchObject({ type: "symlink", symlinkTarget: "/t/file" });
      expect(await fs.stat("/t/dangling")).toMatchObject({ type: "symlink", symlinkTarget: "/nowhere" });
      await fs.makeDirectory("/t/x/y/z");
      await fs.makeDirectory("/t/x/y/z"); // createParents (default): idempotent
      expect((await fs.stat("/t/x/y/z")).type).toBe("directory");
      await fs.makeDirectory("/t/x/single", { createParents: false });
      await fs.remove("/t/x/single");
      await fs.remove("/t/file");
      await fs.remove("/t/link");
      expect((await fs.listFiles("/t")).map((e) => e.name)).toEqual(["dangling", "dir", "x"]);
      await fs.remove("/t", { recursive: true });
      expect(await errorOf(fs.stat("/t"))).toBeInstanceOf(sdk.SandboxFilesystemNotFoundError);
      // Modal's older conveniences.
      await box.sandbox.mkdir("/old/one", { parents: true });
      await box.sandbox.write("/old/one/f", "x");
      expect(await box.sandbox.ls("/old/one")).toEqual(["f"]);
      await box.sandbox.rm("/old", { recursive: true });
      expect(await errorOf(box.sandbox.ls("/old"))).toBeInstanceOf(sdk.SandboxFilesystemNotFoundError);
    });

    it("fails with the typed error naming the path, and changes nothing", async () => {
      const fs = box.sandbox.filesystem;
      await fs.writeText("x", "/e/file");
      await fs.makeDirectory("/e/dir/sub");
      // The sandbox user has no capabilities, so permission bits apply to it.
      await box.sandbox.run("mkdir /e/ro && chmod 555 /e/ro");
      const cases: [string, () => Promise<unknown>, new (...args: never[]) => Error][] = [
        ["read missing", () => fs.readText("/e/missing"), sdk.SandboxFilesystemNotFoundError],
        ["read a directory", () => fs.readBytes("/e/dir"), sdk.SandboxFilesystemIsADirectoryError],
        ["write onto a directory", () => fs.writeText("x", "/e/dir"), sdk.SandboxFilesystemIsADirectoryError],
        ["write under a file", () => fs.writeText("x", "/e/file/child"), sdk.SandboxFilesystemNotADirectoryError],
        ["list a file", () => fs.listFiles("/e/file"), sdk.SandboxFilesystemNotADirectoryError],
        ["list missing", () => fs.listFiles("/e/missing"), sdk.SandboxFilesystemNotFoundError],
        ["stat under a file", () => fs.stat("/e/file/x"), sdk.SandboxFilesystemNotADirectoryError],
        [
          "mkdir existing",
          () => fs.makeDirectory("/e/dir", { createParents: false }),
          sdk.SandboxFilesystemPathAlreadyExistsError,
        ],
        ["mkdir over a file", () => fs.makeDirectory("/e/file"), sdk.SandboxFilesystemPathAlreadyExistsError],
        [
          "mkdir without parent",
          () => fs.makeDirectory("/e/no/such", { createParents: false }),
          sdk.SandboxFilesystemNotFoundError,
        ],
        ["mkdir under a file", () => fs.makeDirectory("/e/file/sub"), sdk.SandboxFilesystemNotADirectoryError],
        ["remove non-empty", () => fs.remove("/e/dir"), sdk.SandboxFilesystemDirectoryNotEmptyError],
        ["remove missing", () => fs.remove("/e/missing"), sdk.SandboxFilesystemNotFoundError],
        ["write into a read-only directory", () => fs.writeText("x", "/e/ro/x"), sdk.SandboxFilesystemPermissionError],
        ["mkdir in a read-only directory", () => fs.makeDirectory("/e/ro/d"), sdk.SandboxFilesystemPermissionError],
        ["relative path", () => fs.readText("e/file"), sdk.InvalidError],
        ["relative path (write)", () => fs.writeText("x", "e/file"), sdk.InvalidError],
      ];
      for (const [what, attempt, type] of cases) {
        const error = await errorOf(attempt());
        expect(error, what).toBeInstanceOf(type);
        expect(error, what).toBeInstanceOf(sdk.SandboxError);
        if (!(error instanceof sdk.InvalidError)) {
          expect(error, what).toBeInstanceOf(sdk.SandboxFilesystemError);
          expect((error as Error).message, what).toContain("/e/");
        }
      }
      expect((await box.sandbox.run("ls -A /e /e/dir /e/ro; cat /e/file")).stdout).toBe(
        "/e:\ndir\nfile\nro\n\n/e/dir:\nsub\n\n/e/ro:\nx",
      );
    });

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

    it("never reads or writes host files: absolute symlinks, ../ chains, symlinks swapped mid-write", async () => {
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
      } finally {
        rmSync(hostDir, { recursive: true, force: true });
      }
    }, 60_000);
  });
}
