// An exec timeout kills the process, and the process is seen as ended only once it is gone and
// its output complete: nothing it wrote before the kill may be dropped, and nothing may keep
// running. A 1 ms timeout fires while the process is still being started, the hardest case.
import { describe, expect, it } from "vitest";
import { realServerAvailable, useTestSandbox, useTestServer } from "./test-support.js";

const available = await realServerAvailable();

if (available) {
  describe("exec timeout", () => {
    const server = useTestServer();
    const box = useTestSandbox(server);

    it("keeps every byte written before the kill, and leaves nothing running", async () => {
      for (let run = 0; run < 10; run++) {
        const marker = `/tmp/wrote-${run}`;
        // The marker is written only after the output, so a marker means the output is in the pipe.
        const p = await box.sandbox.exec(["sh", "-c", `printf x; : > ${marker}; exec sleep 1000`], { timeoutMs: 1 });
        const [stdout, code] = await Promise.all([p.stdout.readText(), p.wait()]);
        expect(code).toBe(124);
        const wrote = (await box.sandbox.run(`test -e ${marker}`)).exitCode === 0;
        const running = await box.sandbox.run(
          "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f; echo; done | grep -c '^sleep 1000' || true",
        );
        // Killed before or after its printf; but once the marker exists, "x" must have arrived.
        expect({ stdout: wrote ? stdout : stdout.replace(/^x$/, ""), running: running.stdout }).toEqual({
          stdout: wrote ? "x" : "",
          running: "0\n",
        });
      }
    });
  });
}
