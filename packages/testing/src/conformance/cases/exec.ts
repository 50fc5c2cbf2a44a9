import { bytesEqual, deepEqual, equal, match, ok, rejects, settlesWithin } from "../assert.js";
import type { Harness, TestApi } from "../target.js";

const T = 30_000;
const sh = (script: string) => ["sh", "-c", script];

export function execCases(t: TestApi, h: Harness): void {
  const { sdk } = h;

  t.describe("exec", () => {
    t.it(
      "a workdir that does not exist fails the process with 127 and says why",
      async () => {
        const sb = await h.sandbox();
        const p = await sb.exec(["pwd"], { workdir: "/no/such/dir" });
        const [stdout, stderr, code] = await Promise.all([p.stdout.readText(), p.stderr.readText(), p.wait()]);
        equal(code, 127);
        equal(stdout, "");
        match(stderr, /^sbx: cannot change to directory \/no\/such\/dir: .+\n$/);
        const entry = await h.sandbox({ command: ["pwd"], workdir: "/no/such/dir" });
        equal(await entry.wait({ raiseOnTermination: false }), 127, "a sandbox whose workdir does not exist");
        match(await entry.stderr.readText(), /^sbx: cannot change to directory \/no\/such\/dir/);
      },
      T,
    );

    t.it(
      "processes get the default image's environment: HOME=/root, LANG=C.UTF-8, a PATH with /usr/bin",
      async () => {
        const sb = await h.sandbox({ image: undefined }); // the default image, whatever the run's image
        const p = await sb.exec(["sh", "-c", 'echo "$HOME"; echo "$LANG"; echo "$PATH"']);
        const [home, lang, path] = (await p.stdout.readText()).split("\n");
        equal(await p.wait(), 0);
        equal(home, "/root", "HOME");
        equal(lang, "C.UTF-8", "LANG");
        ok(path?.split(":").includes("/usr/bin"), `PATH has /usr/bin: ${JSON.stringify(path)}`);
      },
      T,
    );

    t.it(
      "runs a command and reads stdout, stderr and the exit code",
      async () => {
        const sb = await h.sandbox();
        const p = await sb.exec(sh("echo out; echo err >&2; exit 7"));
        equal(await p.stdout.readText(), "out\n");
        equal(await p.stderr.readText(), "err\n");
        equal(await p.wait(), 7);
        equal(p.returncode, 7);
        equal(await p.poll(), 7);
      },
      T,
    );

    t.it(
      "poll and returncode are null while running",
      async () => {
        const sb = await h.sandbox();
        const p = await sb.exec(["sleep", "5"]);
        equal(p.returncode, null);
        equal(await p.poll(), null);
        await p.kill();
        equal(await p.wait(), 137);
      },
      T,
    );

    t.it(
      "argv runs as given, without a shell",
      async () => {
        const sb = await h.sandbox();
        const p = await sb.exec(["echo", "a  b", "$HOME", "*"]);
        equal(await p.stdout.readText(), "a  b $HOME *\n");
        equal(await p.wait(), 0);
      },
      T,
    );

    t.it(
      "iterates chunks and lines as they arrive",
      async () => {
        const sb = await h.sandbox();
        const p = await sb.exec(sh("echo a; echo b; echo c"));
        const lines: string[] = [];
        for await (const line of p.stdout.lines()) lines.push(line);
        deepEqual(lines, ["a", "b", "c"]);
        const q = await sb.exec(sh("printf '%s\\n' one two"));
        let text = "";
        for await (const chunk of q.stdout) {
          equal(typeof chunk, "string");
          text += chunk;
        }
        equal(text, "one\ntwo\n");
      },
      T,
    );

    t.it(
      "binary mode yields bytes",
      async () => {
        const sb = await h.sandbox();
        const p = await sb.exec(["printf", "%s", "hé"], { mode: "binary" });
        const chunks: Uint8Array[] = [];
        for await (const chunk of p.stdout) {
          ok(chunk instanceof Uint8Array, "binary chunks are Uint8Array");
          chunks.push(chunk);
        }
        const total = chunks.reduce((n, c) => n + c.byteLength, 0);
        equal(total, 3);
        const q = await sb.exec(["echo", "héllo"], { mode: "binary" });
        bytesEqual(await q.stdout.readBytes(), new TextEncoder().encode("héllo\n"));
      },
      T,
    );

    t.it(
      "stderr: 'stdout' merges, 'ignore' discards",
      async () => {
        const sb = await h.sandbox();
        const merged = await sb.exec(sh("echo one; echo two >&2; echo three"), { stderr: "stdout" });
        equal(await merged.stdout.readText(), "one\ntwo\nthree\n");
        equal(await merged.stderr.readText(), "");
        const ignored = await sb.exec(sh("echo out; echo err >&2"), { stdout: "ignore", stderr: "ignore" });
        equal(await ignored.stdout.readText(), "");
        equal(await ignored.stderr.readText(), "");
        equal(await ignored.wait(), 0);
      },
      T,
    );

    t.it(
      "stdin round trip through cat",
      async () => {
        const sb = await h.sandbox();
        const p = await sb.exec(["cat"]);
        await p.stdin.write("hello ");
        await p.stdin.write(new TextEncoder().encode("wörld\n"));
        await p.stdin.close();
        equal(await p.stdout.readText(), "hello wörld\n");
        equal(await p.wait(), 0);
      },
      T,
    );

    t.it(
      "workdir and env",
      async () => {
        const sb = await h.sandbox({ env: { FROM_SANDBOX: "s" } });
        const p = await sb.exec(sh('echo "$FOO-$FROM_SANDBOX"'), { env: { FOO: "bar" } });
        equal(await p.stdout.readText(), "bar-s\n");
        const q = await sb.exec(["pwd"], { workdir: "/tmp" });
        equal(await q.stdout.readText(), "/tmp\n");
      },
      T,
    );

    t.it(
      "a missing program exits 127 and names itself on stderr",
      async () => {
        const sb = await h.sandbox();
        const p = await sb.exec(["nosuchbinary"]);
        const [stderr, code] = await Promise.all([p.stderr.readText(), p.wait()]);
        ok(stderr.includes("nosuchbinary"), `stderr names the program: ${JSON.stringify(stderr)}`);
        equal(code, 127);
      },
      T,
    );

    t.it(
      "kill: SIGKILL by default (137), SIGTERM → 143",
      async () => {
        const sb = await h.sandbox();
        const p = await sb.exec(["sleep", "30"]);
        await p.kill();
        equal(await p.wait(), 137);
        const q = await sb.exec(["sleep", "30"]);
        await q.kill("SIGTERM");
        equal(await q.wait(), 143);
        await p.kill(); // killing an exited process is a no-op
      },
      T,
    );

    t.it(
      "an exec timeout ends the process with 124",
      async () => {
        const sb = await h.sandbox();
        const p = await sb.exec(["sleep", "10"], { timeoutMs: 500 });
        equal(await p.wait(), 124);
      },
      T,
    );

    t.it(
      "exec and run in a terminated sandbox throw SandboxTerminatedError, as in-flight calls do",
      async () => {
        const sb = await h.sandbox();
        await sb.terminate({ wait: true });
        const error = await rejects(() => sb.exec(["true"]), sdk.SandboxTerminatedError);
        equal(error.code, "sandbox_terminated");
        await rejects(() => sb.run("true"), sdk.SandboxTerminatedError);
        await rejects(() => sb.run("true", { wait: false }), sdk.SandboxTerminatedError);
      },
      T,
    );

    t.it(
      "terminating a sandbox ends its running processes' waits and reads",
      async () => {
        const sb = await h.sandbox();
        const p = await sb.exec(sh("echo started; sleep 30"));
        const chunks = p.stdout[Symbol.asyncIterator]();
        const first = await chunks.next();
        equal(first.value, "started\n");
        const waiting = p.wait();
        const reading = chunks.next();
        const settled = Promise.all([
          settlesWithin(waiting, 15_000, "wait after terminate"),
          settlesWithin(reading, 15_000, "read after terminate"),
        ]);
        await sb.terminate();
        const [waited, read] = await settled;
        equal(waited.status, "rejected", "a pending wait ends with an error");
        ok(
          (waited as PromiseRejectedResult).reason instanceof sdk.SandboxTerminatedError,
          "wait: SandboxTerminatedError",
        );
        equal(read.status, "rejected", "a pending read ends with an error");
        ok(
          (read as PromiseRejectedResult).reason instanceof sdk.SandboxTerminatedError,
          "read: SandboxTerminatedError",
        );
        equal(await p.poll(), 137, "poll reports the kill");
      },
      T,
    );

    t.it(
      "an aborted wait rejects promptly",
      async () => {
        const sb = await h.sandbox();
        const p = await sb.exec(["sleep", "30"]);
        const controller = new AbortController();
        const waiting = p.wait({ signal: controller.signal });
        setTimeout(() => controller.abort(), 100);
        const result = await settlesWithin(waiting, 5_000, "aborted wait");
        equal(result.status, "rejected");
        const reason = (result as PromiseRejectedResult).reason as Error;
        ok(reason.name === "AbortError" || reason instanceof sdk.SandboxError, `unexpected ${reason}`);
        const already = new AbortController();
        already.abort();
        await rejects(() => p.poll({ signal: already.signal }), sdk.SandboxError);
        await p.kill();
      },
      T,
    );
  });
}
