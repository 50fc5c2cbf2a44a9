// A plain Node script (no vitest, whose own handles would keep the process alive) awaiting the
// in-process fake must run to its end: Node exits with code 13 when the event loop empties
// while a top-level await is pending. It imports the built packages (build before running).
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const packageRoot = fileURLToPath(new URL("../..", import.meta.url));

/** Runs `script` as an ES module from this package's directory (so "@sbx/testing" resolves). */
function runScript(script: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--input-type=module", "-e", script],
      { cwd: packageRoot, timeout: 15_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : null) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

const preamble = `
import { SandboxClient } from "@sbx/core";
import { createFakeServer } from "@sbx/testing";
const fake = createFakeServer();
const client = new SandboxClient({ transport: fake.transport });
const sb = await client.sandboxes.create({});
`;

describe("the fake keeps a plain script alive while it awaits the fake", () => {
  it("awaits sb.run of a sleeping command and p.wait() of a scripted long process", async () => {
    const result = await runScript(`${preamble}
fake.onExec("long-job", async ({ sleep, stdout }) => {
  await sleep(200);
  stdout.write("long job done\\n");
  return 3;
});
const run = await sb.run("sleep 0.2; echo slept");
console.log("run:", run.exitCode, run.stdout.trim());
const job = await sb.exec(["long-job"]);
const done = await job.wait();
console.log("wait:", done);
console.log("output:", (await job.stdout.readText()).trim());
await client.close();
await fake.close();
`);
    expect(result.stderr).toBe("");
    expect(result.stdout).toBe("run: 0 slept\nwait: 3\noutput: long job done\n");
    expect(result.code).toBe(0);
  });

  it("does not hold the script open when nothing awaits it (an idle sandbox, a process left running)", async () => {
    const result = await runScript(`${preamble}
await sb.exec(["sh", "-c", "sleep infinity"]);
console.log("started");
`);
    expect(result).toEqual({ code: 0, stdout: "started\n", stderr: "" });
  });
});
