// sb.filesystem on every target: each call and typed error, modes, symlinks, large files in
// chunks, streams from an offset, watches of changes made by processes and by the API, and
// (against the fake) reads cut mid-file and upload chunks whose answers were lost.
import type { FileWatch, FileWatchEvent } from "@sbx/core";
import { bytesEqual, deepEqual, equal, ok, rejects, settlesWithin, throws } from "../assert.js";
import { seededRandom } from "../interleaved.js";
import type { FakeControls, Harness, TestApi } from "../target.js";

const T = 30_000;
const BIG_T = 120_000;
const MiB = 1024 * 1024;
const decoder = new TextDecoder();

/** Pseudo-random bytes, the same for the same seed. */
function bytesOf(size: number, seed: number): Uint8Array {
  const random = seededRandom(seed);
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i += 4) {
    const n = Math.floor(random() * 4_294_967_296);
    out[i] = n & 0xff;
    if (i + 1 < size) out[i + 1] = (n >>> 8) & 0xff;
    if (i + 2 < size) out[i + 2] = (n >>> 16) & 0xff;
    if (i + 3 < size) out[i + 3] = n >>> 24;
  }
  return out;
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of chunks) {
    parts.push(chunk);
    size += chunk.byteLength;
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}

const show = (e: FileWatchEvent) => `${e.type} ${e.paths.join(" -> ")}`;

/** Reads events until one matches `last`, failing (with what was seen) after `ms`. */
async function eventsUntil(watch: FileWatch, last: (e: FileWatchEvent) => boolean, ms = 20_000): Promise<string[]> {
  const seen: string[] = [];
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    watch.close();
  }, ms);
  try {
    for await (const event of watch) {
      seen.push(show(event));
      if (last(event)) return seen;
    }
  } finally {
    clearTimeout(timer);
  }
  throw new Error(
    `the watch ${timedOut ? `saw no matching event within ${ms} ms` : "ended before the expected event"}; saw: ${JSON.stringify(seen)}`,
  );
}

export function filesystemCases(t: TestApi, h: Harness): void {
  const { sdk } = h;

  t.describe("filesystem", () => {
    t.it(
      "writes and reads text and bytes, creating parents; replacing a file keeps its mode",
      async () => {
        const sb = await h.sandbox();
        const fs = sb.filesystem;
        await fs.writeText("héllo ✓\n", "/work/fs/a/b/hello.txt");
        equal(await fs.readText("/work/fs/a/b/hello.txt"), "héllo ✓\n");
        equal((await sb.run("cat /work/fs/a/b/hello.txt")).stdout, "héllo ✓\n", "a process sees the file");
        const bytes = new Uint8Array([0, 1, 2, 127, 128, 254, 255, 10, 13]);
        await fs.writeBytes(bytes, "/work/fs/data.bin");
        bytesEqual(await fs.readBytes("/work/fs/data.bin"), bytes);
        await fs.writeBytes(new Uint8Array(0), "/work/fs/empty");
        equal((await fs.readBytes("/work/fs/empty")).byteLength, 0);
        equal((await fs.stat("/work/fs/empty")).size, 0);

        const fresh = await fs.stat("/work/fs/a/b/hello.txt");
        equal(fresh.mode, 0o644, "a new file's mode");
        equal(fresh.size, new TextEncoder().encode("héllo ✓\n").byteLength);
        equal((await fs.stat("/work/fs/a/b")).mode, 0o755, "a created parent's mode");
        equal((await sb.run("chmod 750 /work/fs/a/b/hello.txt")).exitCode, 0);
        await fs.writeText("replaced", "/work/fs/a/b/hello.txt");
        equal(await fs.readText("/work/fs/a/b/hello.txt"), "replaced");
        equal((await fs.stat("/work/fs/a/b/hello.txt")).mode, 0o750, "the mode survives the replacement");

        // A process writes, the API reads; relative paths in a process are from its workdir.
        const p = await sb.exec(["sh", "-c", "echo one > rel.txt; echo two >> rel.txt"], { workdir: "/work/fs/a" });
        equal(await p.wait(), 0);
        equal(await fs.readText("/work/fs/a/rel.txt"), "one\ntwo\n");

        // LangSmith's read/write.
        await sb.write("/work/fs/ls.txt", "from write");
        equal(decoder.decode(await sb.read("/work/fs/ls.txt")), "from write");
        await sb.write("/work/fs/ls.bin", new Uint8Array([7, 0, 255]));
        bytesEqual(await sb.read("/work/fs/ls.bin"), new Uint8Array([7, 0, 255]));
        // No temporary files are left beside what was written.
        deepEqual(
          (await fs.listFiles("/work/fs")).map((e) => e.name),
          ["a", "data.bin", "empty", "ls.bin", "ls.txt"],
        );
        const tmp = (await fs.listFiles("/")).find((e) => e.name === "tmp");
        equal(tmp?.type, "directory", "/tmp exists");
        await fs.writeText("t", "/tmp/conformance.txt");
        equal(await fs.readText("/tmp/conformance.txt"), "t");
      },
      T,
    );

    t.it(
      "stat and listFiles describe symlinks without following them; entries are sorted by name",
      async () => {
        const sb = await h.sandbox();
        const fs = sb.filesystem;
        const made = await sb.run(
          "mkdir -p /t/dir && printf 12345 > /t/file && ln -s /t/file /t/link && ln -s /nowhere /t/dangling && ln -s dir /t/rel",
        );
        equal(made.exitCode, 0, made.stderr);
        for (const name of ["b", "a", "B", "_x", "10", "9", "~", "Z9"]) await fs.writeText(name, `/t/sorted/${name}`);
        deepEqual(
          (await fs.listFiles("/t/sorted")).map((e) => e.name),
          ["10", "9", "B", "Z9", "_x", "a", "b", "~"],
          "sorted by byte value",
        );
        const entries = await fs.listFiles("/t");
        deepEqual(
          entries.map((e) => [e.name, e.type]),
          [
            ["dangling", "symlink"],
            ["dir", "directory"],
            ["file", "file"],
            ["link", "symlink"],
            ["rel", "symlink"],
            ["sorted", "directory"],
          ],
        );
        const file = entries.find((e) => e.name === "file");
        equal(file?.path, "/t/file");
        equal(file?.size, 5);
        equal(file?.mode, 0o644);
        ok(Math.abs((file?.mtimeMs ?? 0) - Date.now()) < 10 * 60_000, `mtimeMs is now-ish, got ${file?.mtimeMs}`);
        equal(file?.symlinkTarget, undefined);
        const link = await fs.stat("/t/link");
        equal(link.type, "symlink");
        equal(link.symlinkTarget, "/t/file");
        equal(link.name, "link");
        equal(link.path, "/t/link");
        equal((await fs.stat("/t/dangling")).symlinkTarget, "/nowhere");
        equal((await fs.stat("/t/rel")).symlinkTarget, "dir");
        const dir = await fs.stat("/t/dir");
        equal(dir.type, "directory");
        equal(dir.name, "dir");
        equal((await fs.stat("/")).type, "directory");

        // Reads follow symlinks (inside the sandbox); `..` stops at the root.
        equal(await fs.readText("/t/link"), "12345");
        equal(await fs.readText("/t/dir/../file"), "12345");
        equal(await fs.readText("/../../../t/file"), "12345");
        await fs.writeText("inside", "/t/rel/through-link.txt");
        equal(await fs.readText("/t/dir/through-link.txt"), "inside");
        deepEqual(
          (await fs.listFiles("/t/rel")).map((e) => [e.name, e.path]),
          [["through-link.txt", "/t/rel/through-link.txt"]],
          "listing through a symlink names paths under the link",
        );
        // Writing onto a symlink replaces the link; its target is left alone.
        await fs.writeText("new", "/t/link");
        equal((await fs.stat("/t/link")).type, "file");
        equal(await fs.readText("/t/link"), "new");
        equal(await fs.readText("/t/file"), "12345");
        // A symlink loop fails (it does not hang).
        equal((await sb.run("ln -s /t/loop2 /t/loop1 && ln -s /t/loop1 /t/loop2")).exitCode, 0);
        const loop = await rejects(() => fs.readText("/t/loop1"), sdk.SandboxFilesystemError);
        ok(!(loop instanceof sdk.SandboxFilesystemNotFoundError), "a loop is not 'not found'");
      },
      T,
    );

    t.it(
      "makeDirectory (with and without parents) and remove (files, symlinks, directories, trees)",
      async () => {
        const sb = await h.sandbox();
        const fs = sb.filesystem;
        await fs.makeDirectory("/m/x/y/z");
        await fs.makeDirectory("/m/x/y/z"); // createParents (the default): an existing directory is fine
        equal((await fs.stat("/m/x/y/z")).type, "directory");
        equal((await fs.stat("/m/x/y/z")).mode, 0o755);
        await fs.makeDirectory("/m/x/single", { createParents: false });
        equal((await fs.stat("/m/x/single")).type, "directory");
        await fs.remove("/m/x/single");
        await rejects(() => fs.stat("/m/x/single"), sdk.SandboxFilesystemNotFoundError);

        await fs.writeText("target", "/m/file");
        equal((await sb.run("ln -s /m/file /m/link && ln -s /m/x /m/dirlink")).exitCode, 0);
        await fs.remove("/m/link");
        equal(await fs.readText("/m/file"), "target", "removing a symlink leaves its target");
        await fs.remove("/m/dirlink", { recursive: true });
        equal((await fs.stat("/m/x/y/z")).type, "directory", "removing a symlink to a directory leaves the directory");
        await fs.remove("/m/file");
        deepEqual(
          (await fs.listFiles("/m")).map((e) => e.name),
          ["x"],
        );
        await fs.writeText("deep", "/m/x/y/z/deep.txt");
        await fs.remove("/m", { recursive: true });
        await rejects(() => fs.stat("/m"), sdk.SandboxFilesystemNotFoundError);

        // Modal's older conveniences.
        await sb.mkdir("/old/one", { parents: true });
        await rejects(() => sb.mkdir("/old/two/three"), sdk.SandboxFilesystemNotFoundError);
        await sb.write("/old/one/f", "x");
        deepEqual(await sb.ls("/old/one"), ["f"]);
        await sb.rm("/old", { recursive: true });
        await rejects(() => sb.ls("/old"), sdk.SandboxFilesystemNotFoundError);
      },
      T,
    );

    t.it(
      "failures are typed errors naming the path, and change nothing",
      async () => {
        const sb = await h.sandbox();
        const fs = sb.filesystem;
        await fs.writeText("x", "/e/file");
        await fs.makeDirectory("/e/dir/sub");
        // The sandbox user has no capabilities, so permission bits apply to it.
        const setup = await sb.run(
          "mkdir /e/ro && touch /e/ro/keep && chmod 555 /e/ro && touch /e/secret && chmod 000 /e/secret && mkdir /e/locked && chmod 300 /e/locked",
        );
        equal(setup.exitCode, 0, setup.stderr);
        type ErrorClass = abstract new (...args: never[]) => Error;
        const cases: [string, () => Promise<unknown>, ErrorClass][] = [
          ["read missing", () => fs.readText("/e/missing"), sdk.SandboxFilesystemNotFoundError],
          ["stream missing", () => collect(fs.readStream("/e/missing")), sdk.SandboxFilesystemNotFoundError],
          ["stat missing", () => fs.stat("/e/missing"), sdk.SandboxFilesystemNotFoundError],
          ["read under a missing directory", () => fs.readText("/e/nodir/x"), sdk.SandboxFilesystemNotFoundError],
          ["read a directory", () => fs.readBytes("/e/dir"), sdk.SandboxFilesystemIsADirectoryError],
          ["write onto a directory", () => fs.writeText("x", "/e/dir"), sdk.SandboxFilesystemIsADirectoryError],
          ["write under a file", () => fs.writeText("x", "/e/file/child"), sdk.SandboxFilesystemNotADirectoryError],
          ["list a file", () => fs.listFiles("/e/file"), sdk.SandboxFilesystemNotADirectoryError],
          ["list missing", () => fs.listFiles("/e/missing"), sdk.SandboxFilesystemNotFoundError],
          ["stat under a file", () => fs.stat("/e/file/x"), sdk.SandboxFilesystemNotADirectoryError],
          ["remove under a file", () => fs.remove("/e/file/x"), sdk.SandboxFilesystemNotADirectoryError],
          [
            "mkdir existing",
            () => fs.makeDirectory("/e/dir", { createParents: false }),
            sdk.SandboxFilesystemPathAlreadyExistsError,
          ],
          ["mkdir over a file", () => fs.makeDirectory("/e/file"), sdk.SandboxFilesystemPathAlreadyExistsError],
          [
            "mkdir over a file (no parents)",
            () => fs.makeDirectory("/e/file", { createParents: false }),
            sdk.SandboxFilesystemPathAlreadyExistsError,
          ],
          [
            "mkdir without parent",
            () => fs.makeDirectory("/e/no/such", { createParents: false }),
            sdk.SandboxFilesystemNotFoundError,
          ],
          ["mkdir under a file", () => fs.makeDirectory("/e/file/sub"), sdk.SandboxFilesystemNotADirectoryError],
          ["remove non-empty", () => fs.remove("/e/dir"), sdk.SandboxFilesystemDirectoryNotEmptyError],
          ["remove missing", () => fs.remove("/e/missing"), sdk.SandboxFilesystemNotFoundError],
          [
            "write into a read-only directory",
            () => fs.writeText("x", "/e/ro/x"),
            sdk.SandboxFilesystemPermissionError,
          ],
          ["mkdir in a read-only directory", () => fs.makeDirectory("/e/ro/d"), sdk.SandboxFilesystemPermissionError],
          ["remove from a read-only directory", () => fs.remove("/e/ro/keep"), sdk.SandboxFilesystemPermissionError],
          ["read an unreadable file", () => fs.readText("/e/secret"), sdk.SandboxFilesystemPermissionError],
          ["list an unreadable directory", () => fs.listFiles("/e/locked"), sdk.SandboxFilesystemPermissionError],
        ];
        for (const [what, attempt, type] of cases) {
          const error = await rejects(attempt, type).catch((e: Error) => {
            throw new Error(`${what}: ${e.message}`);
          });
          ok(error instanceof sdk.SandboxFilesystemError, `${what}: a SandboxFilesystemError`);
          ok(error instanceof sdk.SandboxError, `${what}: a SandboxError`);
          ok(error.message.includes("/e/"), `${what}: the message names the path: ${error.message}`);
        }
        // The sandbox's root is never removed.
        await rejects(() => fs.remove("/", { recursive: true }), sdk.InvalidError);
        await rejects(() => fs.stat(`/${"x".repeat(5000)}`), sdk.InvalidError);
        const after = await sb.run("chmod 755 /e/ro /e/locked && ls -A /e /e/dir /e/ro; cat /e/file");
        equal(after.stdout, "/e:\ndir\nfile\nlocked\nro\nsecret\n\n/e/dir:\nsub\n\n/e/ro:\nkeep\nx");
        equal((await fs.listFiles("/")).length > 0, true, "the root is still there");
      },
      T,
    );

    t.it(
      "/usr is read-only: the API fails with the permission error, processes with EROFS, nothing changes",
      async () => {
        // The default image's /usr is the host's, read-only (an image's root is the sandbox's own,
        // writable throughout), whatever the run's image.
        const sb = await h.sandbox({ image: undefined });
        const fs = sb.filesystem;
        const before = (await fs.listFiles("/usr")).map((e) => e.name);
        const attempts: [string, () => Promise<unknown>][] = [
          ["write a file", () => fs.writeText("x", "/usr/x")],
          ["write under a new directory", () => fs.writeText("x", "/usr/sbx-new/x")],
          ["make a directory", () => fs.makeDirectory("/usr/sbx-new", { createParents: false })],
          ["make directories", () => fs.makeDirectory("/usr/sbx-new/a/b")],
          ["remove a tree", () => fs.remove("/usr/bin", { recursive: true })],
        ];
        for (const [what, attempt] of attempts) {
          const error = await rejects(attempt, sdk.SandboxFilesystemPermissionError, /Read-only file system/).catch(
            (e: Error) => {
              throw new Error(`${what}: ${e.message}`);
            },
          );
          ok(error.message.includes("/usr/"), `${what}: the message names the path: ${error.message}`);
        }
        const redirect = await sb.run("echo x > /usr/x");
        deepEqual(
          { exitCode: redirect.exitCode, stdout: redirect.stdout, stderr: redirect.stderr },
          { exitCode: 2, stdout: "", stderr: "sh: 1: cannot create /usr/x: Read-only file system\n" },
        );
        const touch = await sb.run("touch /usr/x");
        deepEqual(
          { exitCode: touch.exitCode, stderr: touch.stderr },
          { exitCode: 1, stderr: "touch: cannot touch '/usr/x': Read-only file system\n" },
        );
        const link = await sb.run("ln -s /tmp /usr/l");
        deepEqual(
          { exitCode: link.exitCode, stderr: link.stderr },
          { exitCode: 1, stderr: "ln: failed to create symbolic link '/usr/l': Read-only file system\n" },
        );
        const mkdir = await sb.run("mkdir /usr/d");
        equal(mkdir.exitCode, 1);
        ok(/^mkdir: .*Read-only file system\n$/.test(mkdir.stderr), mkdir.stderr);
        deepEqual(
          (await fs.listFiles("/usr")).map((e) => e.name),
          before,
          "nothing was added to or removed from /usr",
        );
        // Beside /usr, the sandbox's files are writable.
        equal((await sb.run("echo x > /tmp/usr-x && cat /tmp/usr-x")).stdout, "x\n");
      },
      T,
    );

    t.it(
      "relative paths are InvalidError before any request",
      async () => {
        const sb = await h.sandbox();
        const fs = sb.filesystem;
        const fake = h.target.fake; // a capability: only the fake records calls to count
        const before = fake?.calls.length;
        for (const [what, attempt] of [
          ["readText", () => fs.readText("e/file")],
          ["readBytes", () => fs.readBytes("./file")],
          ["readStream", () => collect(fs.readStream("file"))],
          ["writeText", () => fs.writeText("x", "e/file")],
          ["writeBytes", () => fs.writeBytes(new Uint8Array(1), "file")],
          ["writeStream", () => fs.writeStream([new Uint8Array(1)], "file")],
          ["listFiles", () => fs.listFiles("tmp")],
          ["stat", () => fs.stat("")],
          ["makeDirectory", () => fs.makeDirectory("a/b")],
          ["remove", () => fs.remove("a")],
          ["read", () => sb.read("a")],
          ["write", () => sb.write("a", "x")],
          ["path with NUL", () => fs.stat("/tmp/a\0b")],
        ] as const) {
          const error = await rejects(attempt, sdk.InvalidError).catch((e: Error) => {
            throw new Error(`${what}: ${e.message}`);
          });
          equal(error.code, "invalid", what);
        }
        await throws(() => fs.watch("relative/path"), sdk.InvalidError);
        await throws(() => fs.readStream("/tmp/x", { offset: -1 }), sdk.InvalidError);
        if (fake) equal(fake.calls.length, before, "no request may be sent for invalid input");
      },
      T,
    );

    t.it(
      "a 9 MiB file round-trips in chunks (writeStream of uneven pieces), and streams from an offset",
      async () => {
        const sb = await h.sandbox();
        const fs = sb.filesystem;
        const size = 9 * MiB + 12_345; // more than two upload chunks
        const data = bytesOf(size, 9);
        async function* pieces() {
          for (let at = 0; at < size; at += 1_000_003) {
            await Promise.resolve();
            yield data.subarray(at, at + 1_000_003);
          }
        }
        await fs.writeStream(pieces(), "/big/file.bin");
        equal((await fs.stat("/big/file.bin")).size, size);
        bytesEqual(await collect(fs.readStream("/big/file.bin")), data, "streamed back");
        bytesEqual(await fs.readBytes("/big/file.bin"), data, "read back");
        bytesEqual(await collect(fs.readStream("/big/file.bin", { offset: size - 10 })), data.subarray(size - 10));
        const middle = 4 * MiB + 7;
        bytesEqual(await collect(fs.readStream("/big/file.bin", { offset: middle })), data.subarray(middle));
        equal((await collect(fs.readStream("/big/file.bin", { offset: size }))).byteLength, 0, "from the end");
        equal((await collect(fs.readStream("/big/file.bin", { offset: size + 100 }))).byteLength, 0, "past the end");
        // writeStream takes a plain iterable too, and writeBytes a big buffer.
        await fs.writeStream([data.subarray(0, 3), data.subarray(3, 5 * MiB)], "/big/sync.bin");
        bytesEqual(await fs.readBytes("/big/sync.bin"), data.subarray(0, 5 * MiB));
        await fs.writeBytes(data, "/big/bytes.bin");
        bytesEqual(await fs.readBytes("/big/bytes.bin"), data);
        await fs.writeStream([], "/big/none.bin");
        equal((await fs.stat("/big/none.bin")).size, 0);
        deepEqual(
          (await fs.listFiles("/big")).map((e) => [e.name, e.size]),
          [
            ["bytes.bin", size],
            ["file.bin", size],
            ["none.bin", 0],
            ["sync.bin", 5 * MiB],
          ],
        );
      },
      BIG_T,
    );

    t.it(
      "watch reports creates, modifies, renames and deletes made by a process, in order",
      async () => {
        const sb = await h.sandbox();
        await sb.filesystem.makeDirectory("/w1/sub");
        const watch = sb.filesystem.watch("/w1");
        await watch.ready;
        const r = await sb.run(
          "echo one > /w1/a; echo two >> /w1/a; mv /w1/a /w1/b; echo x > /w1/sub/nested; rm /w1/b",
        );
        equal(r.exitCode, 0, r.stderr);
        const seen = await eventsUntil(watch, (e) => e.type === "delete");
        // Shells may open-truncate-write, so several modifies can follow the create; dedupe them.
        const distinct = seen.filter((s, i) => s !== seen[i - 1]);
        deepEqual(distinct, ["create /w1/a", "modify /w1/a", "rename /w1/a -> /w1/b", "delete /w1/b"]);
        ok(!seen.some((s) => s.includes("nested")), "no events from below the directory without `recursive`");
      },
      T,
    );

    t.it(
      "watch with `recursive` covers new directories too, and `filter` keeps only the types asked for",
      async () => {
        const sb = await h.sandbox();
        await sb.filesystem.makeDirectory("/w2/old");
        const watch = sb.filesystem.watch("/w2", { recursive: true, filter: ["create"] });
        await watch.ready;
        await sb.run("echo a > /w2/old/f1 && mkdir -p /w2/new/deeper && echo b > /w2/new/deeper/f2 && touch /w2/done");
        const seen = await eventsUntil(watch, (e) => e.paths[0] === "/w2/done");
        for (const expected of [
          "create /w2/old/f1",
          "create /w2/new",
          "create /w2/new/deeper",
          "create /w2/new/deeper/f2",
          "create /w2/done",
        ]) {
          ok(seen.includes(expected), `${expected} in ${JSON.stringify(seen)}`);
        }
        ok(
          seen.every((s) => s.startsWith("create ")),
          `only creates: ${JSON.stringify(seen)}`,
        );
      },
      T,
    );

    t.it(
      "watch reports changes made through the API; an SDK write is one create, with no temporary names",
      async () => {
        const sb = await h.sandbox();
        const fs = sb.filesystem;
        await fs.makeDirectory("/w3");
        await fs.writeText("v1", "/w3/file.txt");
        await fs.writeText("other", "/w3/other.txt");
        const dir = fs.watch("/w3");
        const file = fs.watch("/w3/file.txt");
        await Promise.all([dir.ready, file.ready]);
        await fs.makeDirectory("/w3/d");
        await fs.writeText("v2", "/w3/file.txt");
        await fs.writeText("changed", "/w3/other.txt");
        await sb.run("echo more >> /w3/file.txt");
        await fs.remove("/w3/other.txt");
        await fs.remove("/w3/d");
        deepEqual(await eventsUntil(file, (e) => e.type === "modify"), ["create /w3/file.txt", "modify /w3/file.txt"]);
        const seen = await eventsUntil(dir, (e) => e.type === "delete" && e.paths[0] === "/w3/d");
        deepEqual(seen, [
          "create /w3/d",
          "create /w3/file.txt",
          "create /w3/other.txt",
          "modify /w3/file.txt",
          "delete /w3/other.txt",
          "delete /w3/d",
        ]);
      },
      T,
    );

    t.it(
      "watching a symlink follows it: paths are under its target",
      async () => {
        const sb = await h.sandbox();
        equal((await sb.run("mkdir -p /w4/real && ln -s /w4/real /w4/link")).exitCode, 0);
        const watch = sb.filesystem.watch("/w4/link");
        await watch.ready;
        await sb.run("touch /w4/real/x");
        deepEqual(await eventsUntil(watch, () => true), ["create /w4/real/x"]);
      },
      T,
    );

    t.it(
      "a watch ends quietly after timeoutMs and on close(); it fails with typed errors",
      async () => {
        const sb = await h.sandbox();
        const fs = sb.filesystem;
        await fs.makeDirectory("/w5");
        await fs.writeText("x", "/w5/file");
        const events: FileWatchEvent[] = [];
        const timed = fs.watch("/w5", { timeoutMs: 300 });
        const started = Date.now();
        const done = settlesWithin(
          (async () => {
            for await (const e of timed) events.push(e);
          })(),
          15_000,
          "a watch with timeoutMs",
        );
        equal((await done).status, "fulfilled");
        ok(Date.now() - started >= 250, "the watch lasted about timeoutMs");
        deepEqual(events, []);

        const closed = fs.watch("/w5");
        await closed.ready;
        setTimeout(() => closed.close(), 50);
        const ended = await settlesWithin(
          (async () => {
            for await (const e of closed) events.push(e);
          })(),
          15_000,
          "a closed watch",
        );
        equal(ended.status, "fulfilled");
        deepEqual(events, []);

        const missing = fs.watch("/w5/missing");
        await rejects(() => missing.ready, sdk.SandboxFilesystemNotFoundError);
        await rejects(async () => {
          for await (const _ of missing) void _;
        }, sdk.SandboxFilesystemNotFoundError);
        await rejects(() => fs.watch("/w5/file/below").ready, sdk.SandboxFilesystemNotADirectoryError);

        await throws(() => fs.watch("relative/path"), sdk.InvalidError);
        await throws(() => fs.watch("/w5", { filter: ["created" as "create"] }), sdk.InvalidError);
        await throws(() => fs.watch("/w5", { timeoutMs: -1 }), sdk.InvalidError);
      },
      T,
    );

    t.it(
      "a watch ends when its sandbox stops",
      async () => {
        const sb = await h.sandbox();
        await sb.filesystem.makeDirectory("/w6");
        const watch = sb.filesystem.watch("/w6");
        await watch.ready;
        await sb.run("touch /w6/before-stop");
        const seen: string[] = [];
        const ended = (async () => {
          for await (const e of watch) seen.push(show(e));
        })();
        await new Promise((resolve) => setTimeout(resolve, 200));
        await sb.terminate();
        equal((await settlesWithin(ended, 20_000, "the watch of a stopped sandbox")).status, "fulfilled");
        ok(seen.includes("create /w6/before-stop"), `saw ${JSON.stringify(seen)}`);
      },
      T,
    );

    // A capability, not a difference: fault injection needs the fake's controls.
    if (h.target.fake) filesystemFaultCases(t, h, h.target.fake);
  });
}

/** How many times a `size`-byte read is cut, `times` cuts of `afterBytes` each being offered. */
function cutsOf(size: number, afterBytes: number, times: number): number {
  let cuts = 0;
  for (let left = size; cuts < times && left > afterBytes; cuts++) left -= afterBytes;
  return cuts;
}

function filesystemFaultCases(t: TestApi, h: Harness, fake: FakeControls): void {
  const count = (method: string) => fake.calls.filter((c) => c.method === method).length;

  t.describe("filesystem faults (fake server)", () => {
    t.it(
      "a file read cut mid-stream resumes at the next byte: every byte once, in order",
      async () => {
        const sb = await h.sandbox();
        const fs = sb.filesystem;
        const size = 2 * MiB + 3;
        const data = bytesOf(size, 42);
        await fs.writeBytes(data, "/cut/file.bin");
        for (const afterBytes of [0, 1, 4_093, 262_145, 1_000_001]) {
          const before = count("ReadFile");
          fake.cutStreams({ afterBytes, times: 5 });
          bytesEqual(await fs.readBytes("/cut/file.bin"), data, `cut after ${afterBytes} bytes`);
          fake.clearFaults();
          equal(count("ReadFile") - before, cutsOf(size, afterBytes, 5) + 1, `reads with cuts after ${afterBytes}`);
        }
        const offset = 1_234_567;
        const before = count("ReadFile");
        fake.cutStreams({ afterBytes: 100_000, times: 3 });
        bytesEqual(await collect(fs.readStream("/cut/file.bin", { offset })), data.subarray(offset), "from an offset");
        fake.clearFaults();
        equal(count("ReadFile") - before, 4);
      },
      BIG_T,
    );

    t.it(
      "upload chunks whose answers were lost are retried and applied once",
      async () => {
        const sb = await h.sandbox();
        const fs = sb.filesystem;
        const size = 9 * MiB + 5;
        const data = bytesOf(size, 7);
        let before = count("WriteFile");
        fake.failNext("WriteFile", { code: "unavailable", afterApplying: true });
        await fs.writeBytes(data, "/lost/big.bin");
        bytesEqual(await fs.readBytes("/lost/big.bin"), data, "the file is exact");
        equal(count("WriteFile") - before, 4, "three chunks, the first sent twice");

        // The finishing chunk: the file is moved into place once, the retries are answered.
        before = count("WriteFile");
        fake.failNext("WriteFile", { code: "unavailable", afterApplying: true, times: 2 });
        await fs.writeText("exactly once", "/lost/small.txt");
        equal(await fs.readText("/lost/small.txt"), "exactly once");
        equal(count("WriteFile") - before, 3);

        // Failures before the chunk arrives are retried too.
        fake.failNext("WriteFile", { code: "unavailable", times: 2 });
        await fs.writeText("after failures", "/lost/other.txt");
        equal(await fs.readText("/lost/other.txt"), "after failures");
        deepEqual(
          (await fs.listFiles("/lost")).map((e) => [e.name, e.size]),
          [
            ["big.bin", size],
            ["other.txt", 14],
            ["small.txt", 12],
          ],
          "no temporary files are left",
        );
      },
      BIG_T,
    );

    t.it(
      "file calls failing with UNAVAILABLE before they reach the sandbox are retried",
      async () => {
        const sb = await h.sandbox();
        const fs = sb.filesystem;
        const methods = ["MakeDirectory", "Stat", "ListFiles", "ReadFile", "Remove", "Watch"] as const;
        const before = methods.map(count);
        for (const method of methods) fake.failNext(method, { code: "unavailable" });
        await fs.makeDirectory("/retry/d");
        equal((await fs.stat("/retry/d")).type, "directory");
        await fs.writeText("r", "/retry/f");
        deepEqual(
          (await fs.listFiles("/retry")).map((e) => e.name),
          ["d", "f"],
        );
        equal(await fs.readText("/retry/f"), "r");
        await fs.remove("/retry/f");
        await rejects(() => fs.stat("/retry/f"), h.sdk.SandboxFilesystemNotFoundError);
        const watch = fs.watch("/retry");
        await watch.ready;
        watch.close();
        methods.forEach((method, i) => {
          equal(count(method) - (before[i] as number), method === "Stat" ? 3 : 2, `${method} calls`);
        });
      },
      T,
    );

    t.it(
      "remove and makeDirectory whose answers were lost succeed on the retry",
      async () => {
        const sb = await h.sandbox();
        const fs = sb.filesystem;
        await fs.writeText("x", "/lost-answers/file");
        fake.failNext("Remove", { code: "unavailable", afterApplying: true });
        await fs.remove("/lost-answers/file");
        await rejects(() => fs.stat("/lost-answers/file"), h.sdk.SandboxFilesystemNotFoundError);
        fake.failNext("MakeDirectory", { code: "unavailable", afterApplying: true });
        await fs.makeDirectory("/lost-answers/dir", { createParents: false });
        equal((await fs.stat("/lost-answers/dir")).type, "directory");
        // Without a lost answer the same calls still fail as they should.
        await rejects(() => fs.remove("/lost-answers/file"), h.sdk.SandboxFilesystemNotFoundError);
        await rejects(
          () => fs.makeDirectory("/lost-answers/dir", { createParents: false }),
          h.sdk.SandboxFilesystemPathAlreadyExistsError,
        );
      },
      T,
    );
  });
}
