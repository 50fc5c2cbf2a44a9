// Signals reach processes as on Linux: a process ends on a signal only when the signal ends
// it (SIGWINCH's default is to be ignored), with 128+n as its returncode.
import { equal } from "../assert.js";
import type { Harness, TestApi } from "../target.js";

const T = 30_000;
/** Long enough for a signal that would end a process to have done so. */
const SETTLE_MS = 500;
const settle = () => new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
/** The entrypoint's process id (SandboxInfo.entrypoint_process_id on both targets). */
const ENTRYPOINT = "entrypoint";

export function signalCases(t: TestApi, h: Harness): void {
  t.describe("signals", () => {
    t.it(
      "a SIGWINCH does not end a running process; a SIGTERM then ends it with 143",
      async () => {
        const sb = await h.sandbox();
        const p = await sb.exec(["sleep", "30"]);
        await p.kill(28); // SIGWINCH: ignored unless handled
        await settle();
        equal(await p.poll(), null, "returncode after a SIGWINCH");
        await p.kill("SIGTERM");
        equal(await p.wait(), 143, "returncode after a SIGTERM (128 + 15)");
        equal(p.returncode, 143);
      },
      T,
    );

    t.it(
      "the entrypoint of a sandbox created without a command has no pid and ignores signals",
      async () => {
        const sb = await h.sandbox();
        const entry = await sb.reconnect(ENTRYPOINT);
        equal(entry.commandId, ENTRYPOINT);
        equal(entry.pid, undefined, "the entrypoint's pid (no process runs behind it)");
        await entry.kill("SIGTERM");
        await settle();
        equal(await sb.poll(), null, "the sandbox after its command-less entrypoint got a SIGTERM");
        await sb.terminate();
        equal(await sb.wait({ raiseOnTermination: false }), 137);
        equal((await entry.result).exitCode, 137, "the entrypoint ends with the sandbox, terminated");
      },
      T,
    );
  });
}
