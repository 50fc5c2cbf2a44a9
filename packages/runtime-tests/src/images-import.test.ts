// client.images.import(path) in Deno and Bun (the Node adapter's is tested in @sbx/node): an
// OCI layout directory (tarred on the fly) and a `docker save` tarball, against the fake and
// the real server, which both import them and start sandboxes from them.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeDockerSave, writeOciLayout } from "@sbx/test-fixtures/image-archives";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bunBinary, runBun } from "./bun-support.js";
import { allowNetTo, denoBinary, runDeno } from "./deno-support.js";
import type { ImportSeen } from "./image-import-checks.js";
import { RESULT_PREFIX } from "./remote-suite.js";
import { realServerAvailable, useTargets } from "./support.js";
import type { RemoteTarget } from "./targets.js";

const deno = denoBinary();
const bun = bunBinary();
const runnable = await realServerAvailable();

const RUNTIMES = [
  {
    name: "deno",
    binary: deno,
    run: (target: RemoteTarget, dir: string, args: string[]) =>
      runDeno(
        deno as string,
        [
          "run",
          "--node-modules-dir=manual",
          "--sloppy-imports",
          allowNetTo([target.url]),
          `--allow-read=${dir}`,
          "src/deno-images-entry.ts",
          JSON.stringify(target),
          ...args,
        ],
        { timeoutMs: 120_000 },
      ),
  },
  {
    name: "bun",
    binary: bun,
    run: (target: RemoteTarget, _dir: string, args: string[]) =>
      runBun(bun as string, ["run", "src/bun-images-entry.ts", JSON.stringify(target), ...args], {
        timeoutMs: 120_000,
      }),
  },
] as const;

describe.skipIf(!runnable)("images.import(path) in Deno and Bun", () => {
  const running = useTargets();
  const dir = mkdtempSync(join(tmpdir(), "sbx-runtime-images-"));
  const layout = join(dir, "layout");
  const tarball = join(dir, "saved.tar");
  beforeAll(() => {
    mkdirSync(layout);
    writeOciLayout(join(dir, "work-oci"), layout, "example.test/runtimes/oci:1", {
      files: { "app/hello.txt": "hello from oci\n" },
      config: { Env: ["FROM=layout"], WorkingDir: "/app" },
      busybox: true,
    });
    // 4 MiB more than the sockets buffer: a refusal answered before the body is read must
    // still reach the client (the server reads the rest first), not a closed connection.
    writeDockerSave(join(dir, "work-save"), tarball, "example.test/runtimes/saved:1", {
      files: { "etc/motd": "saved\n", "var/filler": "f".repeat(4 * 1024 * 1024) },
      config: { User: "4321" },
      busybox: true,
    });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const runtime of RUNTIMES) {
    for (const kind of ["fake", "real server"] as const) {
      it.skipIf(!runtime.binary)(`${runtime.name} → ${kind}`, async () => {
        const target = running.targets.find((t) => t.kind === kind) as RemoteTarget;
        const run = await runtime.run(target, dir, [layout, tarball, join(dir, "missing.tar")]);
        const line = run.stdout.split("\n").find((l) => l.startsWith(RESULT_PREFIX));
        if (!line) throw new Error(`${runtime.name} reported nothing (exit ${run.code}):\n${run.stderr.slice(-4000)}`);
        const seen = JSON.parse(line.slice(RESULT_PREFIX.length)) as ImportSeen;
        expect(seen.layout).toBe("example.test/runtimes/oci:1 /app hello from oci\nlayout");
        expect(seen.tarball).toBe("example.test/runtimes/saved:1 / saved\n4321");
        expect(seen.missing).toMatch(/^InvalidError: import: cannot read /);
      });
    }
  }
});
