/**
 * sbx from Bun: create a sandbox, run a program and stream its output as it prints, then copy
 * a file in, let the sandbox work on it, and copy the result back out.
 *
 *   SBX_ENDPOINT=http://127.0.0.1:7420 SBX_TOKEN=… bun src/main.ts
 */
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { SandboxClient } from "@sbx/bun";

const COUNTDOWN = `
import time
for i in range(3, 0, -1):
    print(f"countdown {i}", flush=True)
    time.sleep(0.2)
print("liftoff!")
`;

await using client = new SandboxClient();
console.log(`sbx from Bun ${Bun.version}, server ${client.endpoint}`);

await using sandbox = await client.sandboxes.create({ app: "bun-example", timeoutMs: 120_000 });
console.log(`created sandbox ${sandbox.id}`);

// 1. Run code; its output arrives line by line while it runs.
const countdown = await sandbox.exec(["python3", "-c", COUNTDOWN]);
for await (const line of countdown.stdout.lines()) console.log(`  sandbox: ${line}`);
console.log(`exit code ${await countdown.wait()}`);

// 2. A local file in, a command on it, the result out (into a folder that does not exist yet).
const local = await mkdtemp(join(import.meta.dir, "..", ".example-"));
try {
  await Bun.write(join(local, "animals.txt"), "zebra\nemu\nyak\nbeaver\n");
  await sandbox.filesystem.copyFromLocal(join(local, "animals.txt"), "/work/animals.txt");
  const sorting = await sandbox.run("sort /work/animals.txt | tr a-z A-Z > /work/sorted.txt");
  console.log(`sorted inside the sandbox (exit code ${sorting.exitCode})`);
  await sandbox.filesystem.copyToLocal("/work/sorted.txt", join(local, "results", "sorted.txt"));
  const sorted = await Bun.file(join(local, "results", "sorted.txt")).text();
  console.log(`copied back: ${sorted.trim().split("\n").join(", ")}`);
} finally {
  await rm(local, { recursive: true, force: true });
}

console.log(`terminated, return code ${await sandbox.terminate({ wait: true })}`);
