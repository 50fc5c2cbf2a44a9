// Runs the quickstart against @sbx/testing's fake server over a real port. The fake runs
// no real code: here it is scripted to answer like the Python programs would.
import { SandboxClient } from "@sbx/node";
import { createFakeServer } from "@sbx/testing";
import { quickstart } from "./quickstart.ts";

const fake = createFakeServer();
fake.onExec(/countdown/, async ({ stdout, sleep }) => {
  for (let i = 5; i > 0; i--) {
    stdout.write(`countdown ${i}\n`);
    await sleep(300);
  }
  return { stdout: "liftoff!\n" };
});
fake.onExec(/input\(/, async ({ stdin }) => {
  const name = (await stdin.text()).trim();
  return { stdout: `What is your name? Hello, ${name}! (from inside the sandbox)\n` };
});
fake.onExec(/6 \* 7/, () => ({ stdout: "6 x 7 = 42\n", stderr: "a note on stderr\n" }));
fake.onExec(/tick/, async ({ stdout, sleep }) => {
  for (let i = 1; i <= 4; i++) {
    stdout.write(`tick ${i}\n`);
    await sleep(200);
  }
});
const { url, close } = await fake.listen();
console.log(`sbx quickstart against the FAKE server at ${url} (scripted; no real sandbox)`);
try {
  await using client = new SandboxClient({ endpoint: url, token: "fake" });
  await quickstart(client);
} finally {
  await close();
  await fake.close();
}
