// The Effect API covers what the Promise API does: files and commands as well as sandboxes and
// processes, against the in-memory fake (through @sbx/node/effect, i.e. @sbx/core/effect).
import { CommandHandle, SandboxClient, SandboxFile } from "@sbx/core";
import { layer as transportLayer } from "@sbx/core/effect";
import { createFakeServer } from "@sbx/testing";
import * as Effect from "effect/Effect";
import * as Fiber from "effect/Fiber";
import * as Stream from "effect/Stream";
import { afterAll, describe, expect, it } from "vitest";
import {
  Commands,
  CommandTimeoutError,
  Files,
  InvalidError,
  Sandboxes,
  SandboxFilesystemNotFoundError,
  type SbxConnection,
} from "./effect.js";

const fake = createFakeServer();
const { transport } = fake;
fake.onExec(/^greet (.*)$/, ({ match }) => ({ stdout: `hello ${match?.[1]}\n`, stderr: "a warning\n", exitCode: 3 }));
fake.onExec("slow", ({ sleep }) => sleep(60_000));
fake.onExec("euro", async ({ stdout, sleep }) => {
  const bytes = new TextEncoder().encode("€€");
  stdout.write(bytes.subarray(0, 2)); // a character split across two writes
  await sleep(20);
  stdout.write(bytes.subarray(2));
  return 0;
});

const run = <A, E>(effect: Effect.Effect<A, E, SbxConnection>) =>
  Effect.runPromise(effect.pipe(Effect.provide(transportLayer(transport))));

const withSandbox = <A, E>(use: (sandboxId: string) => Effect.Effect<A, E, SbxConnection>) =>
  Effect.acquireUseRelease(
    Sandboxes.create({}),
    (sb) => use(sb.id),
    (sb) => Effect.ignore(Sandboxes.terminate(sb.id)),
  );

afterAll(async () => {
  await fake.close?.();
});

describe("Effect API: Files", () => {
  it("writes, reads, lists, stats, makes directories and removes", async () => {
    const result = await run(
      withSandbox((id) =>
        Effect.gen(function* () {
          yield* Files.makeDirectory(id, "/work/sub");
          yield* Files.writeText(id, "/work/sub/a.txt", "héllo");
          yield* Files.writeBytes(id, "/work/sub/b.bin", new Uint8Array([1, 2, 3]));
          yield* Files.writeStream(id, "/work/sub/c.txt", [
            new TextEncoder().encode("c1"),
            new TextEncoder().encode("c2"),
          ]);
          const text = yield* Files.readText(id, "/work/sub/a.txt");
          const bytes = yield* Files.readBytes(id, "/work/sub/b.bin");
          const streamed = yield* Stream.runCollect(Files.readStream(id, "/work/sub/c.txt", { offset: 1 }));
          const names = (yield* Files.listFiles(id, "/work/sub")).map((f) => f.name);
          const info = yield* Files.stat(id, "/work/sub/a.txt");
          yield* Files.remove(id, "/work/sub", { recursive: true });
          const gone = yield* Effect.flip(Files.stat(id, "/work/sub"));
          return {
            text,
            bytes: [...bytes],
            streamed: new TextDecoder().decode(Buffer.concat([...streamed])),
            names,
            info,
            gone,
          };
        }),
      ),
    );
    expect(result.text).toBe("héllo");
    expect(result.bytes).toEqual([1, 2, 3]);
    expect(result.streamed).toBe("1c2");
    expect(result.names).toEqual(["a.txt", "b.bin", "c.txt"]);
    expect(result.info).toMatchObject({ name: "a.txt", type: "file", size: 6 });
    expect(result.gone).toBeInstanceOf(SandboxFilesystemNotFoundError);
  });

  it("watches a directory", async () => {
    const events = await run(
      withSandbox((id) =>
        Effect.gen(function* () {
          yield* Files.makeDirectory(id, "/watched");
          let ready!: () => void;
          const inPlace = new Promise<void>((resolve) => (ready = resolve));
          const watching = yield* Effect.forkChild(
            Stream.runCollect(Stream.take(Files.watch(id, "/watched", { filter: ["create"], onReady: ready }), 1)),
          );
          yield* Effect.promise(() => inPlace);
          yield* Files.writeText(id, "/watched/new.txt", "x");
          return yield* Fiber.join(watching);
        }),
      ),
    );
    expect([...events]).toEqual([{ type: "create", paths: ["/watched/new.txt"] }]);
  });

  it("refuses bad input with InvalidError before any request", async () => {
    const error = await run(Effect.flip(Files.readText("sb-x", "relative/path")));
    expect(error).toBeInstanceOf(InvalidError);
    const filter = await run(
      Effect.flip(Stream.runCollect(Files.watch("sb-x", "/", { filter: ["nope" as "create"] }))),
    );
    expect(filter).toBeInstanceOf(InvalidError);
  });
});

describe("Effect API: Commands", () => {
  it("runs a command to its result (stdout, stderr, exit code)", async () => {
    const result = await run(withSandbox((id) => Commands.run(id, "greet effect")));
    expect(result).toEqual({ stdout: "hello effect\n", stderr: "a warning\n", exitCode: 3, success: false });
  });

  it("streams a command's output with byte offsets, whole characters only, and reads its result", async () => {
    const { chunks, result, again } = await run(
      withSandbox((id) =>
        Effect.gen(function* () {
          const info = yield* Commands.start(id, "euro");
          const chunks = yield* Stream.runCollect(Commands.output(id, info.processId));
          const result = yield* Commands.result(id, info.processId);
          const again = yield* Commands.result(id, info.processId, { stdoutOffset: 3 });
          return { chunks: [...chunks], result, again };
        }),
      ),
    );
    expect(chunks.map((c) => c.data).join("")).toBe("€€");
    expect(chunks.every((c) => c.stream === "stdout" && !c.data.includes("\uFFFD"))).toBe(true);
    expect(chunks[0]?.offset).toBe(0);
    expect(result.stdout).toBe("€€");
    expect(again.stdout).toBe("€");
  });

  it("kills a command past its timeout (CommandTimeoutError) and on request", async () => {
    const timedOut = await run(withSandbox((id) => Effect.flip(Commands.run(id, "slow", { timeoutMs: 50 }))));
    expect(timedOut).toBeInstanceOf(CommandTimeoutError);
    const killed = await run(
      withSandbox((id) =>
        Effect.gen(function* () {
          const info = yield* Commands.start(id, "slow", { timeoutMs: 0 });
          yield* Commands.kill(id, info.processId);
          return yield* Commands.result(id, info.processId);
        }),
      ),
    );
    expect(killed.exitCode).toBe(137);
  });

  it("refuses an empty command with InvalidError", async () => {
    expect(await run(Effect.flip(Commands.start("sb-x", " ")))).toBeInstanceOf(InvalidError);
  });
});

describe("lazily loaded classes keep instanceof", () => {
  it("CommandHandle and SandboxFile", async () => {
    await using client = new SandboxClient({ transport });
    await using sb = await client.sandboxes.create();
    const handle = await sb.run("greet you", { wait: false });
    expect(handle).toBeInstanceOf(CommandHandle);
    expect({}).not.toBeInstanceOf(CommandHandle);
    await sb.write("/f.txt", "x");
    await using file = await sb.open("/f.txt");
    expect(file).toBeInstanceOf(SandboxFile);
    expect(handle).not.toBeInstanceOf(SandboxFile);
  });
});
