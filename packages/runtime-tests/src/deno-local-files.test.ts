// copyFromLocal / copyToLocal in Deno against a real server and the fake: a few MiB of random
// bytes round-trip with the same SHA-256 (computed by Node, by the sandbox, and again by Node
// on the copy Deno wrote back), and missing sources fail without leaving files behind.
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { allowNetTo, denoBinary, runDeno } from "./deno-support.js";
import { RESULT_PREFIX } from "./remote-suite.js";
import { realServerAvailable, useTargets } from "./support.js";

const deno = denoBinary();
const runnable = deno !== undefined && (await realServerAvailable());

describe.skipIf(!runnable)("deno: copyFromLocal / copyToLocal", () => {
  const running = useTargets();
  const dir = mkdtempSync(join(tmpdir(), "sbx-deno-files-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const kind of ["real server", "fake"] as const) {
    it(`${kind}: 5 MiB and a bit round-trip intact; missing sources are errors`, async () => {
      const target = running.targets.find((t) => t.kind === kind)!;
      const data = randomBytes(5 * 1024 * 1024 + 12_345);
      const sha256 = createHash("sha256").update(data).digest("hex");
      const slug = kind.replace(" ", "-");
      const input = join(dir, `${slug}-input.bin`);
      const output = join(dir, slug, "out", "nested", "copy.bin");
      writeFileSync(input, data);

      const run = await runDeno(
        deno!,
        [
          "run",
          "--node-modules-dir=manual",
          "--sloppy-imports",
          allowNetTo([target.url]),
          `--allow-read=${dir}`,
          `--allow-write=${dir}`,
          "src/deno-local-files-entry.ts",
          JSON.stringify(target),
          input,
          output,
        ],
        { timeoutMs: 120_000 },
      );
      const line = run.stdout.split("\n").find((l) => l.startsWith(RESULT_PREFIX));
      if (!line || run.code !== 0) throw new Error(`deno exited ${run.code}:\n${run.stdout}\n${run.stderr}`);
      const seen = JSON.parse(line.slice(RESULT_PREFIX.length));

      expect(seen.remoteSize).toBe(data.length);
      if (kind === "real server") expect(seen.remoteSha256).toBe(sha256);
      expect(createHash("sha256").update(readFileSync(output)).digest("hex")).toBe(sha256);
      // Written beside the target and renamed: no temporary file is left next to it.
      expect(seen.outputDirEntries).toEqual(["copy.bin"]);
      // Deno's own NotFound, as the cause of core's InvalidError for unreadable data to write.
      expect(seen.missingLocal).toMatch(/^InvalidError: .*\[cause NotFound\]$/);
      expect(seen.missingRemote).toMatch(/^SandboxFilesystemNotFoundError: /);
      expect(seen.missingRemoteCreated).toBe(false);
    });
  }
});
