// Pseudo-terminals in real sandboxes: programs see a terminal, its size and resizes, the line
// discipline's ^C, and an interactive python3 REPL can be driven through sendInput.
import * as sdk from "@sbx/node";
import { describe, expect, it } from "vitest";
import { realServerAvailable, useTestSandbox, useTestServer } from "./test-support.js";

const available = await realServerAvailable();

/** Reads a handle's chunks until `pattern` has appeared in the output. */
async function until(handle: sdk.CommandHandle, pattern: RegExp): Promise<string> {
  let seen = "";
  for await (const chunk of handle) {
    seen += chunk.data;
    if (pattern.test(seen)) return seen;
  }
  throw new Error(`output ended without ${pattern}: ${JSON.stringify(seen)}`);
}

if (available) {
  describe("PTY (real server)", () => {
    const server = useTestServer();
    const box = useTestSandbox(server);

    const ttyCheck = "import os, sys; print(os.isatty(0), os.isatty(1), os.isatty(2), os.environ.get('TERM'))";

    it("a program sees a terminal on stdin, stdout and stderr, and TERM", async () => {
      const withPty = await box.sandbox.run(`python3 -c "${ttyCheck}"`, { pty: true });
      expect(withPty.stdout).toBe("True True True xterm-256color\r\n");
      const without = await box.sandbox.run(`python3 -c "${ttyCheck}"`);
      expect(without.stdout).toBe("False False False None\n");
      const p = await box.sandbox.exec(["sh", "-c", "tty"], { pty: true });
      expect(await p.stdout.readText()).toMatch(/^\/dev\/pts\/\d+\r\n$/);
      expect(await p.wait()).toBe(0);
    });

    it("stdout and stderr are one terminal stream", async () => {
      const r = await box.sandbox.run("echo out; echo err >&2", { pty: true });
      expect(r.stdout).toBe("out\r\nerr\r\n");
      expect(r.stderr).toBe("");
    });

    it("the initial size and a resize reach the program", async () => {
      const sized = await box.sandbox.run("stty size", { pty: true, ptySize: { rows: 30, cols: 100 } });
      expect(sized.stdout).toBe("30 100\r\n");
      const h = await box.sandbox.run("stty size; read line; stty size", { pty: true, wait: false });
      await until(h, /24 80\r\n/);
      await h.resize(40, 120);
      await h.sendInput("go\n");
      const result = await h.result;
      expect(result.stdout).toMatch(/24 80\r\n(go\r\n)?40 120\r\n$/);
      const p = await box.sandbox.exec(["sh", "-c", "read line; stty size"], { pty: true });
      await p.resize(50, 132);
      await p.stdin.write("x\n");
      expect(await p.stdout.readText()).toContain("50 132\r\n");
    });

    it("^C from the terminal interrupts the foreground program (SIGINT, 130)", async () => {
      const h = await box.sandbox.run("echo ready; exec sleep 30", { pty: true, wait: false, timeoutMs: 0 });
      await until(h, /ready/);
      await h.sendInput("\x03");
      const result = await h.result;
      expect(result.exitCode).toBe(130);
    });

    it("an interactive python3 REPL is driven through sendInput", async () => {
      const h = await box.sandbox.run("python3 -q", { pty: true, wait: false, timeoutMs: 0 });
      await until(h, />>> $/);
      await h.sendInput("x = 6 * 7\n");
      await h.sendInput("print(f'answer={x}')\n");
      expect(await until(h, /answer=42\r\n>>> $/)).toContain("answer=42");
      await h.sendInput("exit()\n");
      expect((await h.result).exitCode).toBe(0);
    });

    it("resizing a process without a terminal is a FailedPreconditionError; bad sizes are InvalidError", async () => {
      const h = await box.sandbox.run("sleep 30", { wait: false, timeoutMs: 0 });
      await expect(h.resize(10, 10)).rejects.toBeInstanceOf(sdk.FailedPreconditionError);
      await expect(h.resize(0, 10)).rejects.toBeInstanceOf(sdk.InvalidError);
      await h.kill();
      await expect(box.sandbox.run("true", { ptySize: { rows: 10, cols: 10 } })).rejects.toBeInstanceOf(
        sdk.InvalidError,
      );
    });
  });
}
