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

  say("5. Terminate the sandbox");
  const code = await sandbox.terminate({ wait: true });
  console.log(`   terminated, return code ${code} (137 = killed)`);
}
