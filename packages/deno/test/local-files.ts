// Run by src/deno.test.ts against the fake: copyFromLocal / copyToLocal through Deno's file
// API, in a folder the test owns (args: endpoint, token, folder). Prints one JSON line.
import { SandboxClient } from "../src/index.ts";

const [endpoint, token, dir] = Deno.args as [string, string, string];
await using client = new SandboxClient({ endpoint, token });
await using sb = await client.sandboxes.create();
const report: Record<string, unknown> = {};
const failure = async (promise: Promise<unknown>) => {
  try {
    await promise;
    return "resolved";
  } catch (error) {
    return error instanceof Error ? error.name : String(error);
  }
};
const entries = async (path: string) => (await Array.fromAsync(Deno.readDir(path))).map((e) => e.name).sort();

// In and out again, to a folder that does not exist yet.
await Deno.writeTextFile(`${dir}/in.txt`, "héllo from deno\n");
await sb.filesystem.copyFromLocal(`${dir}/in.txt`, "/work/in.txt");
report.inside = await sb.filesystem.readText("/work/in.txt");
await sb.filesystem.copyToLocal("/work/in.txt", `${dir}/new/folder/out.txt`);
report.outside = await Deno.readTextFile(`${dir}/new/folder/out.txt`);

// Replacing a file; a failed copy leaves the old one whole and no temporary file beside it.
await Deno.writeTextFile(`${dir}/keep.txt`, "old");
await sb.filesystem.writeText("new", "/work/new.txt");
await sb.filesystem.copyToLocal("/work/new.txt", `${dir}/keep.txt`);
report.replaced = await Deno.readTextFile(`${dir}/keep.txt`);
report.copyDirectoryOut = await failure(sb.filesystem.copyToLocal("/work", `${dir}/keep.txt`));
report.afterFailure = await Deno.readTextFile(`${dir}/keep.txt`);
report.copyMissingIn = await failure(sb.filesystem.copyFromLocal(`${dir}/missing.txt`, "/work/missing.txt"));
report.entries = await entries(dir);
console.log(JSON.stringify(report));
