// copyFromLocal / copyToLocal under Bun against a real server: a few MiB of random bytes go in
// and come back out with the same SHA-256 (checked by the sandbox and, on the file Bun wrote,
// by Node); missing sources give the runtime's and the SDK's errors and leave nothing behind.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bunBinary, runBun } from "./bun-support.js";
import { RESULT_PREFIX } from "./remote-suite.js";
import { realServerAvailable, useTargets } from "./support.js";

const bun = bunBinary();
const runnable = bun !== undefined && (await realServerAvailable());

interface Seen {
  remoteSha256: string;
  remoteSize: number;
  replacedText: string;
  missingLocal: string;
  missingLocalCreated: boolean;
  directoryLocal: string;
  missingRemote: string;
  missingRemoteCreated: boolean;
  abortedMidway: boolean;
  aborted: string;
  abortedCreated: boolean;
  effectOutput: string;
  outputDirEntries: string[];
}

describe.skipIf(!runnable)("local files in Bun (real server)", () => {
  const targets = useTargets();
  const dir = mkdtempSync(join(tmpdir(), "sbx-bun-local-"));
  const input = join(dir, "input.bin");
  const output = join(dir, "out", "nested", "data.bin");
  // Not a multiple of any chunk size, so the last piece is a short one.
  const data = randomBytes(6 * 1024 * 1024 + 12_345);
  const sha256 = createHash("sha256").update(data).digest("hex");
  let seen: Seen;

  beforeAll(async () => {
    writeFileSync(input, data);
    const real = targets.targets.find((t) => t.kind === "real server")!;
    const run = await runBun(bun!, ["run", "src/bun-local-files-entry.ts", JSON.stringify(real), input, output], {
      timeoutMs: 5 * 60_000,
    });
    const line = run.stdout.split("\n").find((l) => l.startsWith(RESULT_PREFIX));
    if (!line) throw new Error(`bun reported nothing (exit ${run.code}):\n${run.stderr.slice(-4000)}`);
    seen = JSON.parse(line.slice(RESULT_PREFIX.length)) as Seen;
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("copyFromLocal puts the file's exact bytes in the sandbox", () => {
    expect(seen.remoteSize).toBe(data.byteLength);
    expect(seen.remoteSha256).toBe(sha256);
  });

  it("copyToLocal writes the exact bytes, creating the folders, and leaves no temporary file", () => {
    const copied = readFileSync(output);
    expect(copied.byteLength).toBe(data.byteLength);
    expect(createHash("sha256").update(copied).digest("hex")).toBe(sha256);
    expect(seen.outputDirEntries).toEqual(["data.bin", "replaced.txt"]);
  });

  it("copyToLocal replaces an existing file whole", () => {
    expect(seen.replacedText).toBe("short");
  });

  it("a missing or directory local source rejects with the runtime's error and creates nothing", () => {
    expect(seen.missingLocal).toMatch(/ENOENT/);
    expect(seen.missingLocalCreated).toBe(false);
    expect(seen.directoryLocal).toMatch(/EISDIR/);
  });

  it("a missing sandbox file rejects with SandboxFilesystemNotFoundError and writes nothing locally", () => {
    expect(seen.missingRemote).toMatch(/^SandboxFilesystemNotFoundError/);
    expect(seen.missingRemoteCreated).toBe(false);
  });

  it("copyToLocal aborted midway rejects and leaves neither the file nor its temporary", () => {
    expect(seen.abortedMidway).toBe(true);
    expect(seen.aborted).toMatch(/^AbortError/);
    expect(seen.abortedCreated).toBe(false);
    // outputDirEntries (checked above) was listed after the abort: no temporary file in it.
  });

  it("@sbx/bun/effect: its layer runs the Effect API in Bun", () => {
    expect(seen.effectOutput).toBe("effect in bun\n");
  });
});
