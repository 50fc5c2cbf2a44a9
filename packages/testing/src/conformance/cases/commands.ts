import { deepEqual, equal, match, ok, rejects, settlesWithin } from "../assert.js";
import type { Harness, TestApi } from "../target.js";

const T = 30_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const utf8Length = (text: string) => new TextEncoder().encode(text).byteLength;

type Chunk = { stream: "stdout" | "stderr"; data: string; offset: number };

/** Offsets are contiguous per stream: each chunk starts where the previous one ended. */
function checkOffsets(chunks: readonly Chunk[], start: { stdout: number; stderr: number } = { stdout: 0, stderr: 0 }) {
  const next = { ...start };
  for (const c of chunks) {
    equal(c.offset, next[c.stream], `${c.stream} chunk offset`);
    next[c.stream] += utf8Length(c.data);
  }
  return next;
}

const textOf = (chunks: readonly Chunk[], stream: "stdout" | "stderr") =>
  chunks
    .filter((c) => c.stream === stream)
    .map((c) => c.data)
    .join("");

export function commandCases(t: TestApi, h: Harness): void {
  const { sdk } = h;

  t.describe("commands (run / CommandHandle)", () => {
    t.it(
      "run resolves an ExecutionResult with stdout, stderr, exitCode and success",
      async () => {
        const sb = await h.sandbox();
        const failed = await sb.run("echo hello; echo oops >&2; exit 3");
        deepEqual(
          { ...failed },
          { stdout: "hello\n", stderr: "oops\n", exitCode: 3, success: false },
          "result of a failing command",
        );
        const passed = await sb.run("echo 'Hello, World!'");
        equal(passed.stdout, "Hello, World!\n");
        equal(passed.stderr, "");
        equal(passed.exitCode, 0);
        equal(passed.success, true);
      },
      T,
    );

    t.it(
      "run goes through the shell, with env and workdir",
      async () => {
        const sb = await h.sandbox();
        const r = await sb.run("echo $GREETING; pwd", { env: { GREETING: "hi there" }, workdir: "/tmp" });
        equal(r.stdout, "hi there\n/tmp\n");
      },
      T,
    );

    t.it(
      "onStdout and onStderr receive the output as it comes",
      async () => {
        const sb = await h.sandbox();
        const out: string[] = [];
        const err: string[] = [];
        const r = await sb.run("echo one; echo two >&2; echo three", {
          onStdout: (s) => out.push(s),
          onStderr: (s) => err.push(s),
        });
        equal(out.join(""), "one\nthree\n");
        equal(err.join(""), "two\n");
        equal(r.stdout, "one\nthree\n");
        equal(r.stderr, "two\n");
      },
      T,
    );

    t.it(
      "a command past its timeout is killed and raises CommandTimeoutError",
      async () => {
        const sb = await h.sandbox();
        const started = Date.now();
        const error = await rejects(() => sb.run("sleep 20", { timeoutMs: 300 }), sdk.CommandTimeoutError);
        equal(error.code, "command_timeout");
        ok(error instanceof sdk.SandboxError);
        ok(Date.now() - started < 15_000, "the timeout ended the command early");
        const handle = await sb.run("sleep 20", { timeoutMs: 300, wait: false });
        await rejects(() => handle.result, sdk.CommandTimeoutError);
      },
      T,
    );

    t.it(
      "timeoutMs: 0 means no deadline",
      async () => {
        const sb = await h.sandbox();
        const r = await sb.run("sleep 0.2; echo done", { timeoutMs: 0 });
        equal(r.stdout, "done\n");
      },
      T,
    );

    t.it(
      "wait: false gives a CommandHandle: id, pid, chunks with stream and byte offsets, result",
      async () => {
        const sb = await h.sandbox();
        const handle = await sb.run("echo out 1; echo err 1 >&2; echo out ✓ 2; echo err ✓ 2 >&2", { wait: false });
        ok(typeof handle.commandId === "string" && handle.commandId.length > 0, "commandId");
        ok(handle.pid === undefined || (Number.isInteger(handle.pid) && handle.pid > 0), "pid");
        const chunks: Chunk[] = [];
        for await (const c of handle) {
          ok(c.stream === "stdout" || c.stream === "stderr", "chunk stream");
          ok(typeof c.data === "string" && c.data.length > 0, "chunk data");
          chunks.push({ stream: c.stream, data: c.data, offset: c.offset });
        }
        const end = checkOffsets(chunks);
        equal(textOf(chunks, "stdout"), "out 1\nout ✓ 2\n");
        equal(textOf(chunks, "stderr"), "err 1\nerr ✓ 2\n");
        equal(end.stdout, utf8Length("out 1\nout ✓ 2\n"));
        equal(handle.stdoutOffset, end.stdout);
        equal(handle.stderrOffset, end.stderr);
        const result = await handle.result;
        equal(result.stdout, "out 1\nout ✓ 2\n", "result keeps what the iteration saw");
        equal(result.stderr, "err 1\nerr ✓ 2\n");
        equal(result.exitCode, 0);
        equal(result.success, true);
      },
      T,
    );

    t.it(
      "result without iterating collects all the output",
      async () => {
        const sb = await h.sandbox();
        const handle = await sb.run("echo a; echo b >&2; exit 4", { wait: false });
        const result = await handle.result;
        deepEqual({ ...result }, { stdout: "a\n", stderr: "b\n", exitCode: 4, success: false });
        equal(await handle.result, result, "result is the same promise's value each time");
      },
      T,
    );

    t.it(
      "result settles after a caller read part of the output by hand and never returned the iterator",
      async () => {
        const sb = await h.sandbox();
        const handle = await sb.run("echo one; sleep 0.3; echo two; echo err >&2", { wait: false });
        const abandoned = handle[Symbol.asyncIterator]();
        const first = await abandoned.next();
        equal(first.done, false, "the first chunk");
        equal((first.value as Chunk).data, "one\n");
        // No return(): the iterator is left suspended, as a caller that stops reading leaves it.
        const settled = await settlesWithin(handle.result, 15_000, "result after a partial read");
        equal(settled.status, "fulfilled", "result resolves");
        const result = (settled as PromiseFulfilledResult<{ stdout: string; stderr: string; exitCode: number }>).value;
        deepEqual({ ...result }, { stdout: "one\ntwo\n", stderr: "err\n", exitCode: 0, success: true });
        // A new iteration takes over from the abandoned one, from where the handle had got to.
        const rest: Chunk[] = [];
        const iterated = settlesWithin(
          (async () => {
            for await (const c of handle) rest.push({ stream: c.stream, data: c.data, offset: c.offset });
          })(),
          15_000,
          "a new iteration after an abandoned one",
        );
        equal((await iterated).status, "fulfilled");
        checkOffsets(rest, { stdout: utf8Length("one\n"), stderr: 0 });
        equal(textOf(rest, "stdout"), "two\n");
        equal(textOf(rest, "stderr"), "err\n");
        equal((await abandoned.next()).done, true, "the superseded iterator is finished");
      },
      T,
    );

    t.it(
      "result settles while another caller is still iterating, and that caller sees every chunk",
      async () => {
        const sb = await h.sandbox();
        const handle = await sb.run("echo a; sleep 0.2; echo b; echo c >&2", { wait: false });
        const chunks: Chunk[] = [];
        const printing = (async () => {
          for await (const c of handle) {
            chunks.push({ stream: c.stream, data: c.data, offset: c.offset });
            await sleep(10); // a loop body that takes a while
          }
        })();
        await sleep(50);
        const settled = await settlesWithin(handle.result, 15_000, "result beside an iteration");
        equal(settled.status, "fulfilled", "result resolves");
        const result = (settled as PromiseFulfilledResult<{ stdout: string; stderr: string }>).value;
        equal(result.stdout, "a\nb\n");
        equal(result.stderr, "c\n");
        equal((await settlesWithin(printing, 15_000, "the printing loop")).status, "fulfilled");
        checkOffsets(chunks);
        equal(textOf(chunks, "stdout"), "a\nb\n");
        equal(textOf(chunks, "stderr"), "c\n");
      },
      T,
    );

    t.it(
      "sendInput feeds stdin; closeInput ends it",
      async () => {
        const sb = await h.sandbox();
        const handle = await sb.run("cat", { wait: false });
        await handle.sendInput("World\n");
        await handle.sendInput(new TextEncoder().encode("bytes too\n"));
        await handle.closeInput();
        const result = await handle.result;
        equal(result.stdout, "World\nbytes too\n");
        equal(result.exitCode, 0);
      },
      T,
    );

    t.it(
      "kill ends a running command (SIGKILL: exit code 137; SIGTERM: 143)",
      async () => {
        const sb = await h.sandbox();
        const handle = await sb.run("sleep 30", { wait: false, timeoutMs: 0 });
        await handle.kill();
        const result = await settlesWithin(handle.result, 15_000, "result after kill");
        equal(result.status, "fulfilled");
        equal((result as PromiseFulfilledResult<{ exitCode: number }>).value.exitCode, 137);
        const other = await sb.run("sleep 30", { wait: false, timeoutMs: 0 });
        await other.kill("SIGTERM");
        equal((await other.result).exitCode, 143);
      },
      T,
    );

    t.it(
      "sb.reconnect(commandId, offsets) from another client resumes exactly there",
      async () => {
        const sb = await h.sandbox();
        const handle = await sb.run("echo first; echo second; echo err >&2", { wait: false });
        await handle.result;
        const other = await h.target.makeClient();
        try {
          const again = await (await other.sandboxes.fromId(sb.id)).reconnect(handle.commandId, {
            stdoutOffset: utf8Length("first\n"),
          });
          const chunks: Chunk[] = [];
          for await (const c of again) chunks.push({ stream: c.stream, data: c.data, offset: c.offset });
          checkOffsets(chunks, { stdout: utf8Length("first\n"), stderr: 0 });
          equal(textOf(chunks, "stdout"), "second\n");
          equal(textOf(chunks, "stderr"), "err\n");
          const result = await again.result;
          equal(result.stdout, "second\n");
          equal(result.exitCode, 0);
        } finally {
          await other.close();
        }
      },
      T,
    );

    t.it(
      "handle.reconnect() continues from the handle's own offsets",
      async () => {
        const sb = await h.sandbox();
        const handle = await sb.run("echo one; sleep 0.3; echo two", { wait: false });
        const seen: string[] = [];
        for await (const c of handle) {
          seen.push(c.data);
          break; // stop after the first chunk
        }
        equal(seen.join(""), "one\n");
        const again = await handle.reconnect();
        equal(again.commandId, handle.commandId);
        equal(again.stdoutOffset, 4);
        const rest = await again.result;
        equal(rest.stdout, "two\n");
      },
      T,
    );

    t.it(
      "a running command can be reconnected to while it runs",
      async () => {
        const sb = await h.sandbox();
        const handle = await sb.run("echo ready; cat", { wait: false });
        const again = await sb.reconnect(handle.commandId);
        await again.sendInput("echoed\n");
        await again.closeInput();
        equal((await again.result).stdout, "ready\nechoed\n");
        equal((await handle.result).stdout, "ready\nechoed\n");
      },
      T,
    );

    t.it(
      "after ttlMs a finished command is gone: reconnect raises NotFoundError",
      async () => {
        const sb = await h.sandbox();
        const handle = await sb.run("echo bye", { wait: false, ttlMs: 300 });
        equal((await handle.result).stdout, "bye\n");
        const within = await sb.reconnect(handle.commandId);
        equal((await within.result).stdout, "bye\n", "reconnect within the TTL");
        await sleep(1_200);
        await rejects(() => sb.reconnect(handle.commandId), sdk.NotFoundError);
        const kept = await sb.run("echo kept", { wait: false, ttlMs: -1 });
        await kept.result;
        await sleep(500);
        equal((await (await sb.reconnect(kept.commandId)).result).stdout, "kept\n", "ttlMs: -1 keeps it");
      },
      T,
    );

    t.it(
      "idleTimeoutMs kills a running command nobody is attached to",
      async () => {
        const sb = await h.sandbox();
        const idle = await sb.run("sleep 30", { wait: false, timeoutMs: 0, idleTimeoutMs: 300 });
        const kept = await sb.run("sleep 30", { wait: false, timeoutMs: 0, idleTimeoutMs: -1 });
        await sleep(1_500);
        const result = await settlesWithin((await sb.reconnect(idle.commandId)).result, 10_000, "idle command");
        equal(result.status, "fulfilled");
        equal((result as PromiseFulfilledResult<{ exitCode: number }>).value.exitCode, 137);
        // The one with no idle timeout is still running: kill it and see its end.
        await kept.kill();
        equal((await kept.result).exitCode, 137);
      },
      T,
    );

    t.it(
      "an attached reader keeps an idle-timeout command alive",
      async () => {
        const sb = await h.sandbox();
        const handle = await sb.run("echo start; sleep 1.5; echo end", { wait: false, idleTimeoutMs: 400 });
        const result = await handle.result; // attached the whole time
        equal(result.stdout, "start\nend\n");
        equal(result.exitCode, 0);
      },
      T,
    );

    t.it(
      "killOnDisconnect kills the command when its last reader leaves",
      async () => {
        const sb = await h.sandbox();
        const handle = await sb.run("echo ready; sleep 30", { wait: false, timeoutMs: 0, killOnDisconnect: true });
        for await (const c of handle) {
          if (c.data.includes("ready")) break; // disconnect
        }
        // The grace is 1 s; the rest is room for the client's side to close its stream (a browser
        // under load has taken over 1.5 s), since reconnecting before the kill would cancel it.
        await sleep(4_000);
        const again = await sb.reconnect(handle.commandId, { stdoutOffset: handle.stdoutOffset });
        equal((await again.result).exitCode, 137);
        // Without it, the command keeps running after the reader leaves.
        const stays = await sb.run("echo ready; sleep 30", { wait: false, timeoutMs: 0 });
        for await (const c of stays) {
          if (c.data.includes("ready")) break;
        }
        await sleep(2_500);
        const check = await sb.reconnect(stays.commandId, { stdoutOffset: stays.stdoutOffset });
        const early = await settlesWithin(check.result, 300, "still running").catch((e: Error) => e);
        ok(early instanceof Error, "the command without killOnDisconnect is still running");
        await stays.kill();
        equal((await check.result).exitCode, 137);
      },
      T,
    );

    t.it(
      "a terminated sandbox ends a handle's iteration and result with SandboxTerminatedError",
      async () => {
        const sb = await h.sandbox();
        const handle = await sb.run("echo started; sleep 30", { wait: false, timeoutMs: 0 });
        const iteration = (async () => {
          for await (const _ of handle) {
            // keep reading until the end
          }
        })();
        const result = handle.result;
        await sleep(300);
        const settled = Promise.all([
          settlesWithin(iteration, 15_000, "iteration after terminate"),
          settlesWithin(result, 15_000, "result after terminate"),
        ]);
        await sb.terminate();
        const [read, waited] = await settled;
        equal(read.status, "rejected");
        ok((read as PromiseRejectedResult).reason instanceof sdk.SandboxTerminatedError, "iteration error");
        equal(waited.status, "rejected");
        ok((waited as PromiseRejectedResult).reason instanceof sdk.SandboxTerminatedError, "result error");
      },
      T,
    );

    t.it(
      "an aborted run returns promptly with an AbortError and kills the command",
      async () => {
        const sb = await h.sandbox();
        const controller = new AbortController();
        const running = sb.run("sleep 30", { timeoutMs: 0, signal: controller.signal });
        setTimeout(() => controller.abort(), 200);
        const result = await settlesWithin(running, 5_000, "aborted run");
        equal(result.status, "rejected");
        equal(((result as PromiseRejectedResult).reason as Error).name, "AbortError");
        ok((result as PromiseRejectedResult).reason instanceof sdk.SandboxError);
      },
      T,
    );

    t.it(
      "pty merges stderr into stdout through a terminal",
      async () => {
        const sb = await h.sandbox();
        const r = await sb.run("echo to-out; echo to-err >&2", { pty: true });
        match(r.stdout, /to-out\r?\n/);
        match(r.stdout, /to-err\r?\n/);
        equal(r.stderr, "");
        equal(r.exitCode, 0);
      },
      T,
    );

    t.it(
      "bad run and reconnect arguments raise InvalidError / NotFoundError before anything runs",
      async () => {
        const sb = await h.sandbox();
        await rejects(() => sb.run(""), sdk.InvalidError);
        await rejects(() => sb.run(42 as unknown as string), sdk.InvalidError);
        await rejects(() => sb.run("true", { timeoutMs: -1 }), sdk.InvalidError);
        await rejects(() => sb.run("true", { idleTimeoutMs: -5 }), sdk.InvalidError);
        await rejects(() => sb.run("true", { ttlMs: Number.NaN }), sdk.InvalidError);
        await rejects(() => sb.run("true", { workdir: "relative" }), sdk.InvalidError);
        await rejects(() => sb.run("x".repeat(70_000)), sdk.InvalidError);
        await rejects(() => sb.run("true", { ptySize: { rows: 0, cols: 80 }, pty: true }), sdk.InvalidError);
        await rejects(() => sb.run("true", { onStdout: "no" as unknown as () => void }), sdk.InvalidError);
        await rejects(() => sb.reconnect("cmd-does-not-exist"), sdk.NotFoundError);
        await rejects(() => sb.reconnect(""), sdk.InvalidError);
        const handle = await sb.run("true", { wait: false });
        await rejects(() => sb.reconnect(handle.commandId, { stdoutOffset: -1 }), sdk.InvalidError);
        await handle.result;
      },
      T,
    );
  });
}
