/**
 * copyFromLocal / copyToLocal in Deno, through @sbx/deno (the conformance suite has no local
 * files): `deno run … src/deno-local-files-entry.ts '<target JSON>' <input file> <output file>`.
 * Copies the input into a sandbox, has the sandbox checksum it, copies it back out to the
 * output path (whose folders do not exist yet), tries both copies with missing sources, and
 * prints one line: RESULT_PREFIX + JSON of what it saw, for the Node side to judge.
 */
import { SandboxClient } from "@sbx/deno";
import { RESULT_PREFIX } from "./remote-suite.js";
import type { RemoteTarget } from "./targets.js";

declare const Deno: {
  readonly args: readonly string[];
  readDir(path: string): AsyncIterable<{ readonly name: string }>;
  stat(path: string): Promise<unknown>;
};

const [targetJson, input, output] = Deno.args;
if (!targetJson || !input || !output)
  throw new Error("usage: deno-local-files-entry.ts <target JSON> <input> <output>");
const target = JSON.parse(targetJson) as RemoteTarget;

/** "Name: message", then the cause's name in brackets if it has one. */
const describe = (error: unknown): string =>
  error instanceof Error
    ? `${error.name}: ${error.message}${error.cause instanceof Error ? ` [cause ${error.cause.name}]` : ""}`
    : String(error);
const rejection = async (promise: Promise<unknown>) => {
  try {
    await promise;
    return "resolved";
  } catch (error) {
    return describe(error);
  }
};
const exists = (path: string) =>
  Deno.stat(path).then(
    () => true,
    () => false,
  );

await using client = new SandboxClient({ endpoint: target.url, token: target.token });
await using sb = await client.sandboxes.create({ timeoutMs: 120_000 });

await sb.filesystem.copyFromLocal(input, "/tmp/in/data.bin");
const remote = await sb.exec(["sha256sum", "/tmp/in/data.bin"]);
const remoteSha256 = (await remote.stdout.readText()).split(" ")[0];
await remote.wait();
const remoteSize = (await sb.filesystem.stat("/tmp/in/data.bin")).size;

await sb.filesystem.copyToLocal("/tmp/in/data.bin", output);
const outputDir = output.slice(0, output.lastIndexOf("/"));
const outputDirEntries: string[] = [];
for await (const entry of Deno.readDir(outputDir)) outputDirEntries.push(entry.name);

const missingLocal = await rejection(sb.filesystem.copyFromLocal(`${input}.missing`, "/tmp/in/never.bin"));
const missingRemoteTarget = `${outputDir}/never.bin`;
const missingRemote = await rejection(sb.filesystem.copyToLocal("/tmp/in/no-such-file", missingRemoteTarget));

console.log(
  RESULT_PREFIX +
    JSON.stringify({
      remoteSha256,
      remoteSize,
      outputDirEntries: outputDirEntries.sort(),
      missingLocal,
      missingRemote,
      missingRemoteCreated: await exists(missingRemoteTarget),
    }),
);
