// A process that cannot start (no such program, no such working directory) exits 127 and
// says why on its error output. That line must reach every reader: a process's output is
// complete before anyone can see it exited. The line was lost in only some runs (about 15 in
// 100 here before the fix), so each case runs many times, in parallel batches, with busy loops
// sharing the sandbox's CPUs. SBX_EXEC_FAILURE_RUNS=1000 runs the long proof.
import type * as sdk from "@sbx/node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { realServerAvailable, useTestSandbox, useTestServer } from "./test-support.js";

const available = await realServerAvailable();
const RUNS = Number(process.env.SBX_EXEC_FAILURE_RUNS || 100);
const BATCH = 20;

type Outcome = { code: number; output: string };

/** Runs `once` RUNS times, BATCH at a time; returns every outcome that is not `expected`. */
async function unexpected(once: () => Promise<Outcome>, expected: RegExp, runs = RUNS): Promise<string[]> {
  const wrong: string[] = [];
  for (let done = 0; done < runs; done += BATCH) {
    const batch = await Promise.all(Array.from({ length: Math.min(BATCH, runs - done) }, once));
    for (const r of batch)
      if (r.code !== 127 || !expected.test(r.output)) wrong.push(`${r.code}: ${JSON.stringify(r.output)}`);
  }
  return wrong;
}

if (available) {
  describe("a process that cannot start", () => {
    const server = useTestServer();
    const box = useTestSandbox(server);
    let load: sdk.ContainerProcess<string> | undefined;
    // Busy loops share the sandbox's CPUs with its agent, widening any window.
    beforeAll(async () => {
      load = await box.sandbox.exec(["sh", "-c", "for i in 1 2; do (while :; do :; done) & done; wait"]);
    });
    afterAll(async () => {
      await load?.kill("SIGKILL");
    });

    const stderrOf = async (argv: string[], options: sdk.ExecOptions = {}): Promise<Outcome> => {
      const p = await box.sandbox.exec(argv, options);
      const [output, code] = await Promise.all([p.stderr.readText(), p.wait()]);
      return { code, output };
    };
    const stdoutOf = async (argv: string[], options: sdk.ExecOptions): Promise<Outcome> => {
      const p = await box.sandbox.exec(argv, options);
      const [output, code] = await Promise.all([p.stdout.readText(), p.wait()]);
      return { code, output };
    };

    it("says which program is missing on its stderr, in every run", { timeout: 600_000 }, async () => {
      const wrong = await unexpected(
        () => stderrOf(["nosuchbinary"]),
        /^sbx: cannot run nosuchbinary: No such file or directory\n$/,
      );
      expect(wrong).toEqual([]);
    });

    it("says which working directory is missing on its stderr, in every run", { timeout: 600_000 }, async () => {
      const wrong = await unexpected(
        () => stderrOf(["ls"], { workdir: "/nonexistent" }),
        /^sbx: cannot change to directory \/nonexistent: No such file or directory\n$/,
      );
      expect(wrong).toEqual([]);
    });

    it("says so on stdout when stderr is merged into it, or on a terminal", { timeout: 600_000 }, async () => {
      const runs = Math.max(BATCH, RUNS / 4);
      const merged = await unexpected(
        () => stdoutOf(["nosuchbinary"], { stderr: "stdout" }),
        /^sbx: cannot run nosuchbinary: No such file or directory\n$/,
        runs,
      );
      const terminal = await unexpected(
        () => stdoutOf(["nosuchbinary"], { pty: true }),
        /^sbx: cannot run nosuchbinary: No such file or directory\r\n$/,
        runs,
      );
      expect({ merged, terminal }).toEqual({ merged: [], terminal: [] });
    });
  });
}
