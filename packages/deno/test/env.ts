// Run by src/deno.test.ts: a client built from the environment alone, in Deno, with whatever
// permissions the test grants. Prints one JSON line: the endpoint it chose, and, when asked
// (argument "use"), what a sandbox on that endpoint echoed back, through the Promise API and
// through the Effect layer.
import { Effect, Stream } from "effect";
import { layer, Processes, Sandboxes } from "../src/effect.ts";
import { SandboxClient } from "../src/index.ts";

await using client = new SandboxClient();
const report: Record<string, unknown> = { endpoint: client.endpoint };

if (Deno.args[0] === "use") {
  await using sb = await client.sandboxes.create();
  report.promise = (await sb.run("echo hello from deno")).stdout;

  report.effect = await Effect.runPromise(
    Effect.gen(function* () {
      const info = yield* Sandboxes.create({ command: ["echo", "hello from effect"] });
      const text = yield* Stream.mkString(
        Processes.outputText({ sandboxId: info.id, processId: info.entrypointProcessId, stream: "stdout" }),
      );
      yield* Sandboxes.terminate(info.id);
      return text;
    }).pipe(Effect.provide(layer())),
  );
}
console.log(JSON.stringify(report));
