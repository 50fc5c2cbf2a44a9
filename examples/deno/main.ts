/**
 * sbx from Deno: create a sandbox, run a program and stream its output as it prints, then copy
 * a file in, let the sandbox work on it, and copy the result back out.
 *
 *   SBX_ENDPOINT=http://127.0.0.1:7420 SBX_TOKEN=… deno task start
 */
import { SandboxClient } from "@sbx/deno";

const COUNTDOWN = `
import time
for i in range(3, 0, -1):
    print(f"countdown {i}", flush=True)
    time.sleep(0.2)
print("liftoff!")
`;

await using client = new SandboxClient();
console.log(`sbx from Deno ${Deno.version.deno}, server ${client.endpoint}`);

await using sandbox = await client.sandboxes.create({ app: "deno-example", timeoutMs: 120_000 });
console.log(`created sandbox ${sandbox.id}`);

// 1. Run code; its output arrives line by line while it runs.
const countdown = await sandbox.exec(["python3", "-c", COUNTDOWN]);
for await (const line of countdown.stdout.lines()) console.log(`  sandbox: ${line}`);
console.log(`exit code ${await countdown.wait()}`);

// 2. A local file in, a command on it, the result out (into a folder that does not exist yet).
const here = new URL(".", import.meta.url).pathname;
const local = await Deno.makeTempDir({ dir: here, prefix: ".example-" });
try {
  await Deno.writeTextFile(`${local}/animals.txt`, "zebra\nemu\nyak\nbeaver\n");
  await sandbox.filesystem.copyFromLocal(`${local}/animals.txt`, "/work/animals.txt");
  const sorting = await sandbox.run("sort /work/animals.txt | tr a-z A-Z > /work/sorted.txt");
  console.log(`sorted inside the sandbox (exit code ${sorting.exitCode})`);
  await sandbox.filesystem.copyToLocal("/work/sorted.txt", `${local}/results/sorted.txt`);
  const sorted = await Deno.readTextFile(`${local}/results/sorted.txt`);
  console.log(`copied back: ${sorted.trim().split("\n").join(", ")}`);
} finally {
  await Deno.remove(local, { recursive: true });
}

console.log(`terminated, return code ${await sandbox.terminate({ wait: true })}`);
