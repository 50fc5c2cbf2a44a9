import { SandboxClient, SandboxTimeoutError } from "@sbx/node";
import { createFakeServer } from "@sbx/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { grade } from "./grader.js";

// The fake runs the whole sbx protocol in memory: no server, no network, no Linux needed.
// Scripted handlers stand in for `python3`.
describe("grader (against the sbx fake server)", () => {
  let fake: ReturnType<typeof createFakeServer>;
  let client: SandboxClient;

  beforeEach(() => {
    fake = createFakeServer();
    client = new SandboxClient({ transport: fake.transport });
  });
  afterEach(async () => {
    await client.close();
    await fake.close();
  });

  it("passes an answer that prints the expected output", async () => {
    fake.onExec(/^python3 -c/, async ({ stdin }) => {
      const n = Number(await stdin.text());
      return { stdout: `${n * 2}\n`, exitCode: 0 };
    });
    const result = await grade(client, "print(int(input()) * 2)", "21", "42");
    expect(result).toEqual({ passed: true, output: "42\n", exitCode: 0 });
  });

  it("fails an answer that crashes", async () => {
    fake.onExec(/^python3 -c/, () => ({ stderr: "Traceback...\nZeroDivisionError\n", exitCode: 1 }));
    const result = await grade(client, "print(1/0)", "", "42");
    expect(result.passed).toBe(false);
    expect(result.exitCode).toBe(1);
  });

  it("survives a flaky network: transient failures are retried", async () => {
    fake.onExec(/^python3 -c/, () => ({ stdout: "42\n" }));
    fake.failNext("exec", { code: "unavailable", times: 2 });
    const result = await grade(client, "print(42)", "", "42");
    expect(result.passed).toBe(true);
  });

  it("reports a sandbox that times out", async () => {
    const sandbox = await client.sandboxes.create({ timeoutMs: 100 });
    await expect(sandbox.wait()).rejects.toBeInstanceOf(SandboxTimeoutError);
  });
});
