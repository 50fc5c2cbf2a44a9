import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { lstat, readdir, readFile, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { InvalidError } from "./errors.js";
import type { LocalImageFiles } from "./image-archive.js";
import { localArchive } from "./image-archive.js";

/** Local files as the Node adapter gives them (pieces of a file in one go: enough here). */
const files: LocalImageFiles = {
  async *read(path) {
    yield new Uint8Array(await readFile(path));
  },
  async stat(path, follow) {
    const info = await (follow ? stat(path) : lstat(path));
    return { type: info.isFile() ? "file" : info.isDirectory() ? "directory" : "other", size: info.size };
  },
  list: (path) => readdir(path),
};

async function bytesOf(pieces: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const all: Uint8Array[] = [];
  for await (const piece of pieces) all.push(piece.slice());
  return Buffer.concat(all);
}

const dirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "sbx-archive-"));
  dirs.push(dir);
  return dir;
};
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A directory shaped like an OCI image layout (the contents need not be a real image here). */
function layout(): string {
  const dir = tempDir();
  writeFileSync(join(dir, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(join(dir, "index.json"), '{"schemaVersion":2,"manifests":[]}');
  mkdirSync(join(dir, "blobs", "sha256"), { recursive: true });
  writeFileSync(join(dir, "blobs", "sha256", "a".repeat(64)), "blob one");
  writeFileSync(join(dir, "blobs", "sha256", "b".repeat(64)), Buffer.alloc(70_000, 7));
  return dir;
}

describe("localArchive", () => {
  it("tars an OCI layout directory on the fly: GNU tar reads back every file", async () => {
    const dir = layout();
    // A name past ustar's 100 bytes goes in a PAX record.
    const deep = join(dir, "blobs", "x".repeat(60), "y".repeat(60));
    mkdirSync(deep, { recursive: true });
    writeFileSync(join(deep, "long"), "far down");
    const tar = await bytesOf(await localArchive(files, dir));
    expect(tar.byteLength % 512).toBe(0);
    const out = tempDir();
    execFileSync("tar", ["-x", "-C", out], { input: tar });
    expect(readFileSync(join(out, "oci-layout"), "utf8")).toBe('{"imageLayoutVersion":"1.0.0"}');
    expect(readFileSync(join(out, "blobs", "sha256", "a".repeat(64)), "utf8")).toBe("blob one");
    expect(readFileSync(join(out, "blobs", "sha256", "b".repeat(64)))).toEqual(Buffer.alloc(70_000, 7));
    expect(readFileSync(join(out, "blobs", "x".repeat(60), "y".repeat(60), "long"), "utf8")).toBe("far down");
    const listed = execFileSync("tar", ["-t"], { input: tar, encoding: "utf8" }).trim().split("\n");
    expect(listed.slice(0, 4)).toEqual([
      "blobs/",
      "blobs/sha256/",
      `blobs/sha256/${"a".repeat(64)}`,
      `blobs/sha256/${"b".repeat(64)}`,
    ]);
    // The same directory makes the same archive (no times, owners or order from the machine).
    expect((await bytesOf(await localArchive(files, dir))).equals(tar)).toBe(true);
  });

  it("sends a tarball as it is", async () => {
    const file = join(tempDir(), "image.tar");
    writeFileSync(file, "not really a tar, but sent as given");
    expect((await bytesOf(await localArchive(files, file))).toString()).toBe("not really a tar, but sent as given");
  });

  it("refuses a directory that is no OCI layout, a layout holding a symlink, and a path that is not there", async () => {
    await expect(localArchive(files, tempDir()).then(bytesOf)).rejects.toThrow(/not an OCI image layout/);
    const dir = layout();
    symlinkSync("/etc/passwd", join(dir, "blobs", "link"));
    const error = await localArchive(files, dir)
      .then(bytesOf)
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidError);
    expect((error as Error).message).toMatch(/neither a file nor a directory/);
    await expect(localArchive(files, join(tempDir(), "missing"))).rejects.toThrow(/cannot read/);
  });

  it("fails when a file changes size while it is sent", async () => {
    const dir = layout();
    const growing: LocalImageFiles = {
      ...files,
      async *read(path) {
        yield new Uint8Array(await readFile(path));
        if (path.endsWith("a".repeat(64))) yield new Uint8Array(3);
      },
    };
    await expect(localArchive(growing, dir).then(bytesOf)).rejects.toThrow(/changed while it was being sent/);
  });
});
