// Reattaching from another OS process: a second Node process that knows only the server,
// the sandbox id, the command id and the offsets reads the rest of the output and the result.
import { execFile } from "node:child_process";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import * as sdk from "@sbx/node";
import { describe, expect, it } from "vitest";
import { realServerAvailable, useTestServer } from "./test-support.js";

const available = await realServerAvailable();
const here = dirname(fileURLToPath(import.meta.url));

const READER = `
import { SandboxClient } from "@sbx/node";
const { URL_, TOKEN, SANDBOX, COMMAND, OUT, ERR } = process.env;
const client = new SandboxClient({ endpoint: URL_, token: TOKEN });
const sb = await client.sandboxes.fromId(SANDBOX);
const handle = await sb.reconnect(COMMAND, { stdoutOffset: Number(OUT), stderrOffset: Number(ERR) });
const got = { stdout: "", stderr: "", firstOffsets: {} };
for await (const c of handle) {
  got.firstOffsets[c.stream] ??= c.offset;
  got[c.stream] += c.data;
}
const result = await handle.result;
await client.close();
process.stdout.write(JSON.stringify({ ...got, exitCode: result.exitCode, pid: handle.pid }));
`;

if (available) {
  describe("reconnect from a second process (real server)", () => {
    const server = useTestServer();

    it("a reader in another process picks up at the offsets and gets exactly the rest", async () => {
      await using client = new sdk.SandboxClient({ endpoint: server.url, token: server.token });
      const sb = await client.sandboxes.create();
      // Five numbered lines on each stream, then it waits for input before five more.
      const handle = await sb.run(
        "for i in 1 2 3 4 5; do echo out $i; echo err $i >&2; done; read go; " +
          "for i in 6 7 8 9 10; do echo out $i; echo err $i >&2; done; exit 3",
        { wait: false, timeoutMs: 0 },
      );
      let seen = { stdout: "", stderr: "" };
      for await (const c of handle) {
        seen = { ...seen, [c.stream]: seen[c.stream] + c.data };
        if (seen.stdout.endsWith("out 5\n") && seen.stderr.endsWith("err 5\n")) break;
      }
      const child = promisify(execFile)(process.execPath, ["--input-type=module", "-e", READER], {
        cwd: here,
        env: {
          ...process.env,
          URL_: server.url,
          TOKEN: server.token,
          SANDBOX: sb.id,
          COMMAND: handle.commandId,
          OUT: String(handle.stdoutOffset),
          ERR: String(handle.stderrOffset),
        },
      });
      await handle.sendInput("go\n");
      const { stdout } = await child;
      const other = JSON.parse(stdout) as {
        stdout: string;
        stderr: string;
        exitCode: number;
        pid: number;
        firstOffsets: Record<string, number>;
      };
      const rest = (prefix: string) => [6, 7, 8, 9, 10].map((i) => `${prefix} ${i}\n`).join("");
      expect(other.stdout).toBe(rest("out"));
      expect(other.stderr).toBe(rest("err"));
      expect(other.firstOffsets).toEqual({ stdout: seen.stdout.length, stderr: seen.stderr.length });
      expect(other.exitCode).toBe(3);
      expect(other.pid).toBe(handle.pid);
      // This process's handle still sees the whole output.
      const result = await handle.result;
      expect(result.stdout).toBe(seen.stdout + rest("out"));
      expect(result.exitCode).toBe(3);
      await sb.terminate();
    });
  });
}
