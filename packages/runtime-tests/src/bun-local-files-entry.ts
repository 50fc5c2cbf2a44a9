/**
 * copyFromLocal / copyToLocal in Bun, through @sbx/bun (the conformance suite has no local
 * files): `bun run src/bun-local-files-entry.ts '<target JSON>' <input file> <output file>`.
 * Copies the input into a sandbox, has the sandbox checksum it, copies it back out to the
 * output path (whose folders do not exist yet) and once more over the copy it made, tries both
 * copies with missing sources, aborts a copy out midway, and prints one line: RESULT_PREFIX + JSON of what it saw, for
 * the Node side to judge (it checks the files Bun wrote itself). Also runs a command through
 * the Effect entry (`@sbx/bun/effect`), which nothing else runs in Bun.
 */
import { readdir } from "node:fs/promises";
import { dirname } from "node:path";
import { SandboxClient } from "@sbx/bun";
import { layer, Processes, Sandboxes } from "@sbx/bun/effect";
import { Effect, Stream } from "effect";
import { RESULT_PREFIX } from "./remote-suite.js";
import type { RemoteTarget } from "./targets.js";

const [targetJson, input, output] = process.argv.slice(2);
if (!targetJson || !input || !output) throw new Error("usage: bun-local-files-entry.ts <target JSON> <input> <output>");
const target = JSON.parse(targetJson) as RemoteTarget;

/** "Name: message (code)" of what a promise rejected with, or "resolved". */
const rejection = async (promise: Promise<unknown>): Promise<string> => {
  try {
    await promise;
    return "resolved";
  } catch (error) {
    if (!(error instanceof Error)) return String(error);
    const code = (error as { code?: unknown }).code;
    return `${error.name}: ${error.message}${code ? ` (${code})` : ""}`;
  }
};

await using client = new SandboxClient({ endpoint: target.url, token: target.token });
await using sb = await client.sandboxes.create({ timeoutMs: 120_000 });

await sb.filesystem.copyFromLocal(input, "/tmp/in/data.bin");
const remote = await sb.exec(["sha256sum", "/tmp/in/data.bin"]);
const remoteSha256 = (await remote.stdout.readText()).split(" ")[0];
await remote.wait();
const remoteSize = (await sb.filesystem.stat("/tmp/in/data.bin")).size;

await sb.filesystem.copyToLocal("/tmp/in/data.bin", output);
// Over an existing file: replaced whole (a shorter file leaves no tail of the longer one).
await sb.filesystem.writeText("short", "/tmp/in/short.txt");
const replaced = `${dirname(output)}/replaced.txt`;
await sb.filesystem.copyToLocal("/tmp/in/data.bin", replaced);
await sb.filesystem.copyToLocal("/tmp/in/short.txt", replaced);
const replacedText = await Bun.file(replaced).text();

const missingLocal = await rejection(sb.filesystem.copyFromLocal(`${input}.missing`, "/tmp/in/never.bin"));
const missingLocalCreated = await sb.filesystem.stat("/tmp/in/never.bin").then(
  () => true,
  () => false,
);
const directoryLocal = await rejection(sb.filesystem.copyFromLocal(dirname(input), "/tmp/in/dir.bin"));
const missingRemoteTarget = `${dirname(output)}/never.bin`;
// Aborted mid-copy, once the temporary file beside the target holds bytes: no file, no temp.
await sb.exec(["truncate", "-s", "512M", "/tmp/in/big.bin"]).then((p) => p.wait());
const abortedTarget = `${dirname(output)}/aborted.bin`;
const abort = new AbortController();
const copying = rejection(sb.filesystem.copyToLocal("/tmp/in/big.bin", abortedTarget, { signal: abort.signal }));
let abortedMidway = false;
for (let settled = false; !settled && !abort.signal.aborted; ) {
  const temp = (await readdir(dirname(output))).find((name) => name.startsWith(".aborted.bin."));
  if (temp && Bun.file(`${dirname(output)}/${temp}`).size > 0) {
    abortedMidway = true;
    abort.abort();
  }
  settled = await Promise.race([copying.then(() => true), Bun.sleep(2).then(() => false)]);
}
const aborted = await copying;
const missingRemote = await rejection(sb.filesystem.copyToLocal("/tmp/in/no-such-file", missingRemoteTarget));

// The Effect API over @sbx/bun/effect's layer: a sandbox, a command, its output as a Stream.
const effectOutput = await Effect.runPromise(
  Effect.gen(function* () {
    const info = yield* Sandboxes.create({ timeoutMs: 60_000 });
    const p = yield* Processes.exec(info.id, ["sh", "-c", "echo effect in bun"]);
    const text = yield* Stream.mkString(
      Processes.outputText({ sandboxId: info.id, processId: p.processId, stream: "stdout" }),
    );
    yield* Sandboxes.terminate(info.id);
    return text;
  }).pipe(Effect.provide(layer({ endpoint: target.url, token: target.token }))),
);

console.log(
  RESULT_PREFIX +
    JSON.stringify({
      remoteSha256,
      remoteSize,
      replacedText,
      missingLocal,
      missingLocalCreated,
      directoryLocal,
      missingRemote,
      missingRemoteCreated: await Bun.file(missingRemoteTarget).exists(),
      abortedMidway,
      aborted,
      abortedCreated: await Bun.file(abortedTarget).exists(),
      effectOutput,
      outputDirEntries: (await readdir(dirname(output))).sort(),
    }),
);
