// The README's main command runs examples/quickstart against a real server: this keeps the
// example (and what it promises a newcomer) working.
import { execFile } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { realServerAvailable, useTestServer } from "./test-support.js";

const available = await realServerAvailable();
const example = join(dirname(fileURLToPath(import.meta.url)), "../../../examples/quickstart");

if (available) {
  describe("examples/quickstart against the real server", () => {
    const server = useTestServer();

    it("runs every step and prints what came back", async () => {
      const { stdout } = await promisify(execFile)(process.execPath, ["src/main.ts"], {
        timeout: 20_000,
        cwd: example,
        env: { ...process.env, SBX_ENDPOINT: server.url, SBX_TOKEN: server.token },
      });
      const esc = String.fromCharCode(27);
      const plain = stdout.replace(new RegExp(`${esc}\\[[0-9;]*m`, "g"), "");
      expect(plain).toMatch(/countdown 5[\s\S]*countdown 1[\s\S]*liftoff!/);
      expect(plain).toContain("Hello, Ada! (from inside the sandbox)");
      expect(plain).toContain("stderr: something went wrong");
      expect(plain).toContain("exit code: 3");
      expect(plain).toContain("stdout: 6 x 7 = 42");
      expect(plain).toContain("stderr: a note on stderr");
      expect(plain).toMatch(/handle 1, byte 0: tick 1/);
      expect(plain).toMatch(/handle 2, byte \d+: tick 4/);
      // The reattached handle starts where the first one stopped: no tick is seen twice.
      for (const tick of ["tick 1", "tick 2", "tick 3", "tick 4"]) {
        expect(plain.split(tick).length - 1, tick).toBe(1);
      }
      expect(plain).toContain("terminated, return code 137");
    });
  });
}
