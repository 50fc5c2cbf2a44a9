import type { SandboxClient } from "@sbx/node";

const say = (text: string) => console.log(`\n\u001b[1m${text}\u001b[0m`);

const COUNTDOWN = `
import time
for i in range(5, 0, -1):
    print(f"countdown {i}", flush=True)
    time.sleep(0.3)
print("liftoff!")
`;

const GREETER = `
name = input("What is your name? ")
print(f"Hello, {name}! (from inside the sandbox)")
`;

/** The quickstart tour: every step prints what it does and what came back. */
export async function quickstart(client: SandboxClient): Promise<void> {
  say("1. Create a sandbox");
  await using sandbox = await client.sandboxes.create({ app: "quickstart", timeoutMs: 120_000 });
  console.log(`   created ${sandbox.id}`);

  say("2. Run a Python program and stream its output as it is printed");
  const countdown = await sandbox.exec(["python3", "-c", COUNTDOWN]);
  const started = Date.now();
  for await (const line of countdown.stdout.lines()) {
    console.log(`   +${String(Date.now() - started).padStart(4)} ms  ${line}`);
  }
  console.log(`   exit code: ${await countdown.wait()}`);

  say("3. Send input on stdin and read the reply");
  const greeter = await sandbox.exec(["python3", "-c", GREETER]);
  await greeter.stdin.write("Ada\n");
  await greeter.stdin.close();
  console.log(`   ${(await greeter.stdout.readText()).trim()}`);

  say("4. A failing command reports its exit code and stderr");
  const failing = await sandbox.exec(["sh", "-c", "echo 'something went wrong' >&2; exit 3"]);
  console.log(`   stderr: ${(await failing.stderr.readText()).trim()}`);
  console.log(`   exit code: ${await failing.wait()}`);

  say("5. run(): a shell command, its whole result at once");
  const result = await sandbox.run("echo \"6 x 7 = $((6 * 7))\"; echo 'a note on stderr' >&2");
  console.log(`   stdout: ${result.stdout.trim()}`);
  console.log(`   stderr: ${result.stderr.trim()}`);
  console.log(`   exit code: ${result.exitCode} (success: ${result.success})`);

  say("6. A command in the background: read some output, then reattach by id and offset");
  const ticker = await sandbox.run("for i in 1 2 3 4; do echo tick $i; sleep 0.2; done", { wait: false });
  for await (const chunk of ticker) {
    console.log(`   handle 1, byte ${chunk.offset}: ${chunk.data.trim()}`);
    if (chunk.data.includes("tick 2")) break; // stop reading; the command keeps running
  }
  const again = await sandbox.reconnect(ticker.commandId, { stdoutOffset: ticker.stdoutOffset });
  for await (const chunk of again) console.log(`   handle 2, byte ${chunk.offset}: ${chunk.data.trim()}`);
  console.log(`   exit code: ${(await again.result).exitCode}`);

  say("7. Terminate the sandbox");
  const code = await sandbox.terminate({ wait: true });
  console.log(`   terminated, return code ${code} (137 = killed)`);
}
