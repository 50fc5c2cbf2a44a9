// The server's half of bwrap's user namespace handshake refuses any pid that is not bwrap's
// own child running as the sandbox's base id, and kills the launch when it does (stand-in
// launches: shell scripts that report a pid on descriptor 5, as bwrap would).
import { type ChildProcess, spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { LAUNCH_FDS } from "./launch-command.js";
import { childPidOf, completeUsernsHandshake } from "./userns-handshake.js";

const BASE = 2 ** 31 + 7 * 65_536;

/** A stand-in launch running `script` with the handshake descriptors, as the sandbox's launch has them. */
function launch(script: string): { child: ChildProcess; exited: Promise<NodeJS.Signals | null> } {
  const stdio: ("ignore" | "pipe")[] = ["ignore", "ignore", "ignore", "ignore", "ignore", "ignore", "ignore"];
  stdio[LAUNCH_FDS.info] = "pipe";
  stdio[LAUNCH_FDS.block] = "pipe";
  const child = spawn("/bin/sh", ["-c", script], { stdio });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on("exit", (_code, signal) => resolve(signal)));
  return { child, exited };
}

describe("the user namespace handshake", () => {
  it("reads bwrap's report: a child pid, nothing else", () => {
    expect(childPidOf('{\n    "child-pid": 4242\n}\n')).toBe(4242);
    for (const report of ["", "garbage", "{}", '{"child-pid": "12"}', '{"child-pid": 1}', '{"child-pid": -5}']) {
      expect(() => childPidOf(report), report).toThrow();
    }
  });

  it("refuses a child that does not run as the sandbox's base id, and kills the launch", async () => {
    // A real child of the launch, but running as root (as a reused or forged pid could be).
    const { child, exited } = launch(
      `sleep 30 ${LAUNCH_FDS.info}>&- & echo "{\\"child-pid\\": $!}" >&${LAUNCH_FDS.info}; exec ${LAUNCH_FDS.info}>&-; wait`,
    );
    await expect(completeUsernsHandshake(child, BASE, 10_000)).rejects.toThrow(/does not run as 2147942400/);
    expect(await exited).toBe("SIGKILL");
  });

  it("refuses a child running as the base id in the server's own user namespace (bwrap without --unshare-user)", async () => {
    const { child, exited } = launch(
      // The child reports itself once it runs as BASE (setpriv has dropped, then exec'd sh).
      `setpriv --reuid=${BASE} --regid=${BASE} --clear-groups sh -c 'printf "$1" $$ >&${LAUNCH_FDS.info}; exec ${LAUNCH_FDS.info}>&-; exec sleep 30' report '{"child-pid": %d}' & exec ${LAUNCH_FDS.info}>&-; wait`,
    );
    await expect(completeUsernsHandshake(child, BASE, 10_000)).rejects.toThrow(
      /is in the server's own user namespace, not a new one/,
    );
    expect(await exited).toBe("SIGKILL");
  });

  it("refuses a pid that is not the launch's own child", async () => {
    const stranger = spawn("sleep", ["30"], { stdio: "ignore" });
    try {
      const { child, exited } = launch(
        `echo '{"child-pid": ${stranger.pid}}' >&${LAUNCH_FDS.info}; exec ${LAUNCH_FDS.info}>&-; sleep 30`,
      );
      await expect(completeUsernsHandshake(child, BASE, 10_000)).rejects.toThrow(/is not bwrap's child/);
      expect(await exited).toBe("SIGKILL");
    } finally {
      stranger.kill("SIGKILL");
    }
  });

  it("kills a launch that never reports, at the deadline", async () => {
    const { child, exited } = launch("sleep 30");
    await expect(completeUsernsHandshake(child, BASE, 200)).rejects.toThrow(/did not report its child within/);
    expect(await exited).toBe("SIGKILL");
  });
});
