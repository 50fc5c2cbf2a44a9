// The fake's limits, as the real server's: output kept per stream up to a bound (a read of
// dropped bytes fails with OutputDroppedError naming the first kept offset), and `diskMiB`
// (writes past it fail with ENOSPC).
import { InvalidError, OutputDroppedError, SandboxClient, SandboxFilesystemError } from "@sbx/core";
import { afterAll, describe, expect, it } from "vitest";
import { createFakeServer } from "../index.js";

const fake = createFakeServer({ outputRetentionBytes: 1000 });
const client = new SandboxClient({ transport: fake.transport });
afterAll(async () => {
  await client.close();
  await fake.close();
});

describe("the fake's output retention", () => {
  it("keeps the last bytes of a stream and names the first kept offset to a reader of dropped ones", async () => {
    fake.onExec("noisy", () => ({ stdout: "x".repeat(10_000), exitCode: 0 }));
    const sb = await client.sandboxes.create();
    const h = await sb.run("noisy", { wait: false });
    const error = await (async () => {
      try {
        const again = await sb.reconnect(h.commandId, { stdoutOffset: 0 });
        for await (const _ of again);
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(OutputDroppedError);
    const first = (error as OutputDroppedError).firstKeptOffset;
    expect(10_000 - first).toBeLessThanOrEqual(1000);
    let text = "";
    for await (const chunk of await sb.reconnect(h.commandId, { stdoutOffset: first })) text += chunk.data;
    expect(first + text.length).toBe(10_000);
  });
});

describe("the fake's disk limit", () => {
  it("fails writes past diskMiB with ENOSPC, as the server does", async () => {
    const sb = await client.sandboxes.create({ diskMiB: 16 }); // the server's smallest disk
    await sb.write("/tmp/half", new Uint8Array(8 * 1024 * 1024));
    const error = await sb.write("/tmp/more", new Uint8Array(12 * 1024 * 1024)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SandboxFilesystemError);
    expect((error as Error).message).toMatch(/No space left on device/);
    const shell = await sb.run("printf 'more' > /tmp/small; echo 'x' >> /tmp/small", { wait: true });
    expect(shell.exitCode).toBe(0); // a few bytes still fit
    await sb.filesystem.remove("/tmp/half");
    await sb.write("/tmp/more", new Uint8Array(12 * 1024 * 1024)); // room again
    await expect(client.sandboxes.create({ diskMiB: 0 })).rejects.toBeInstanceOf(InvalidError);
  });

  it("stops a shell command whose redirected write does not fit", async () => {
    const sb = await client.sandboxes.create({ diskMiB: 16 });
    await sb.write("/tmp/full", new Uint8Array(16 * 1024 * 1024 - 10)); // with /etc/hostname (8 bytes): 2 bytes free
    const r = await sb.run("echo hello > /tmp/out", { wait: true }).catch((e: unknown) => e);
    expect(r).toMatchObject({ exitCode: 1 });
    expect((r as { stderr: string }).stderr).toContain("No space left on device");
  });
});
