// Options objects reject keys they do not know: a misspelt or foreign option (`cwd` for
// `workdir`, Modal's `timeout` for `timeoutMs`) is a compile error, not silently ignored.
// tsc checks this file (the typecheck task): each @ts-expect-error line must stay an error.
import { describe, expect, it } from "vitest";
import type { SandboxClient, Sandboxes } from "./client.js";
import type { CommandHandle } from "./command-handle.js";
import type { ExecutionResult } from "./command-ops.js";
import type { ContainerProcess } from "./container-process.js";
import type { LocalImages } from "./images.js";
import type { Sandbox } from "./sandbox.js";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const assertType = <T extends true>(_: T) => {};

/** Never called: only compiled. */
async function unknownKeys(client: SandboxClient, sandboxes: Sandboxes, sb: Sandbox, handle: CommandHandle) {
  // create
  await sandboxes.create({ app: "a", timeoutMs: 1_000, idleTimeoutMs: 500 });
  // @ts-expect-error `cwd` is not an option (it is `workdir`)
  await sandboxes.create({ cwd: "/tmp" });
  // @ts-expect-error unknown keys are rejected beside known ones too
  await sandboxes.create({ app: "a", timeout: 10 });
  // @ts-expect-error
  await sandboxes.fromName("n", { ap: "a" });
  // @ts-expect-error
  for await (const _ of sandboxes.list({ tag: {} })) break;
  void client;

  // exec: the mode picks the stream type; unknown keys fail with or without a mode.
  const text = await sb.exec(["ls"], { workdir: "/tmp" });
  assertType<Equal<typeof text, ContainerProcess<string>>>(true);
  const bytes = await sb.exec(["ls"], { mode: "binary" });
  assertType<Equal<typeof bytes, ContainerProcess<Uint8Array>>>(true);
  // @ts-expect-error `cwd` is not an exec option
  await sb.exec(["ls"], { cwd: "/tmp" });
  // @ts-expect-error unknown keys fail beside `mode` as well (a generic options type let them through)
  await sb.exec(["ls"], { mode: "binary", cwd: "/tmp" });
  // @ts-expect-error
  await sb.exec(["ls"], { mode: "text", timeout: 5 });
  // @ts-expect-error
  await sb.exec(["ls"], { workdir: "/", stdin: "pipe" });

  // run
  const result = await sb.run("ls", { workdir: "/tmp" });
  assertType<Equal<typeof result, ExecutionResult>>(true);
  const started = await sb.run("ls", { wait: false });
  assertType<Equal<typeof started, CommandHandle>>(true);
  // @ts-expect-error
  await sb.run("ls", { cwd: "/tmp" });
  // @ts-expect-error
  await sb.run("ls", { wait: false, cwd: "/tmp" });
  // @ts-expect-error
  await sb.reconnect("cmd-1", { offset: 3 });
  // @ts-expect-error
  await handle.wait({ timeoutMs: 5 });

  // sandbox lifecycle
  // @ts-expect-error Modal's `timeout` is `timeoutMs` here
  await sb.wait({ timeout: 1 });
  // @ts-expect-error
  await sb.terminate({ wiat: true });

  // filesystem
  // @ts-expect-error
  await sb.filesystem.readText("/a", { encoding: "utf8" });
  // @ts-expect-error
  await sb.filesystem.writeText("x", "/a", { mode: 0o644 });
  // @ts-expect-error `parents` is `createParents` on filesystem.makeDirectory
  await sb.filesystem.makeDirectory("/a", { parents: true });
  // @ts-expect-error
  await sb.filesystem.remove("/a", { recursiv: true });
  // @ts-expect-error
  await sb.filesystem.listFiles("/a", { recursive: true });
  // @ts-expect-error
  sb.filesystem.watch("/a", { recursve: true });
  // @ts-expect-error `createParents` is `parents` on sb.mkdir
  await sb.mkdir("/a", { createParents: true });
  // @ts-expect-error
  await sb.read("/a", { offset: 1 });

  // images
  const image = await client.images.fromRegistry("python:3.12-slim", {
    credentials: { username: "u", password: "p" },
    onProgress: ({ bytesDone, bytesTotal }) => void (bytesDone + bytesTotal),
  });
  await sandboxes.create({ image });
  await sandboxes.create({ image: image.id });
  // @ts-expect-error Modal's `image` objects are not sbx's: an Image or a string
  await sandboxes.create({ image: { tag: "3.12" } });
  // @ts-expect-error `auth` is `credentials`
  await client.images.fromRegistry("python", { auth: { username: "u", password: "p" } });
  // @ts-expect-error credentials take a username and a password
  await client.images.fromRegistry("python", { credentials: { token: "t" } });
  // @ts-expect-error
  await client.images.fromRegistry("python", { progress: () => {} });
  // @ts-expect-error
  await client.images.get("im-default", { force: true });
  // @ts-expect-error
  await client.images.delete(image, { force: true });
  // @ts-expect-error
  for await (const _ of client.images.list({ all: true })) break;
  // @ts-expect-error
  await client.images.importArchive(new Uint8Array(0), { name: "x" });
  // @ts-expect-error only runtimes with local files (Node, Deno, Bun) import a path
  await client.images.import("/tmp/image.tar");
  const local = {} as SandboxClient<Sandbox, LocalImages>;
  await local.images.import("/tmp/image.tar", { timeoutMs: 1000 });
  // @ts-expect-error
  await local.images.import("/tmp/image.tar", { format: "oci" });
}

describe("option types", () => {
  it("reject unknown keys (tsc checks the @ts-expect-error lines)", () => {
    expect(typeof unknownKeys).toBe("function");
  });
});
