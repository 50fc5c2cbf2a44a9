import { deepEqual, equal, match, ok, rejects } from "../assert.js";
import type { Harness, TestApi } from "../target.js";

const T = 30_000;

export function sandboxCases(t: TestApi, h: Harness): void {
  const { sdk } = h;

  t.describe("sandboxes", () => {
    t.it(
      "creates a sandbox and finds it by id",
      async () => {
        const sb = await h.sandbox();
        equal(typeof sb.id, "string");
        ok(sb.id.length > 0, "sandbox id is empty");
        equal(sb.returncode, null);
        equal(await sb.poll(), null);
        const again = await h.client().sandboxes.fromId(sb.id);
        equal(again.id, sb.id);
      },
      T,
    );

    t.it(
      "resource limits out of range are InvalidError",
      async () => {
        const client = h.client();
        for (const options of [{ diskMiB: 8 }, { cpu: 0.001 }, { memoryMiB: 8 }]) {
          await rejects(() => client.sandboxes.create(h.createOptions(options)), sdk.InvalidError);
        }
      },
      T,
    );

    t.it(
      "fromId of an unknown sandbox is NotFoundError",
      async () => {
        const error = await rejects(() => h.client().sandboxes.fromId("sb-doesnotexist0000000"), sdk.NotFoundError);
        equal(error.code, "not_found");
        ok(error instanceof sdk.SandboxError);
      },
      T,
    );

    t.it(
      "names are unique per app among running sandboxes",
      async () => {
        const name = `named-${Math.random().toString(36).slice(2, 8)}`;
        const sb = await h.sandbox({ name });
        equal(sb.name, name);
        const found = await h.client().sandboxes.fromName(name, { app: h.app });
        equal(found.id, sb.id);
        await rejects(() => h.sandbox({ name }), sdk.AlreadyExistsError);
        const other = await h.client().sandboxes.create(h.createOptions({ app: `${h.app}-other`, name }));
        try {
          ok(other.id !== sb.id);
        } finally {
          await other.terminate();
        }
        await sb.terminate();
        await rejects(() => h.client().sandboxes.fromName(name, { app: h.app }), sdk.NotFoundError);
        const reused = await h.sandbox({ name });
        ok(reused.id !== sb.id, "a finished sandbox's name can be reused");
      },
      T,
    );

    t.it(
      "fromName with no such sandbox is NotFoundError",
      async () => {
        await rejects(() => h.client().sandboxes.fromName("nobody-has-this-name", { app: h.app }), sdk.NotFoundError);
      },
      T,
    );

    t.it(
      "wait resolves the entrypoint's exit code",
      async () => {
        const sb = await h.sandbox({ command: ["sh", "-c", "exit 3"] });
        equal(await sb.wait(), 3);
        equal(sb.returncode, 3);
        equal(await sb.poll(), 3);
      },
      T,
    );

    t.it(
      "terminate: wait throws SandboxTerminatedError, or resolves 137",
      async () => {
        const sb = await h.sandbox();
        equal(await sb.poll(), null);
        await sb.terminate();
        const error = await rejects(() => sb.wait(), sdk.SandboxTerminatedError);
        equal(error.code, "sandbox_terminated");
        equal(await sb.wait({ raiseOnTermination: false }), 137);
        equal(sb.returncode, 137);
        await sb.terminate(); // a no-op the second time
        equal(await sb.terminate({ wait: true }), 137);
      },
      T,
    );

    t.it(
      "terminate({ wait: true }) resolves 137",
      async () => {
        const sb = await h.sandbox();
        equal(await sb.terminate({ wait: true }), 137);
      },
      T,
    );

    t.it(
      "a sandbox past its timeout ends with SandboxTimeoutError / 124",
      async () => {
        const sb = await h.sandbox({ timeoutMs: 1_000 });
        const error = await rejects(() => sb.wait(), sdk.SandboxTimeoutError);
        equal(error.code, "sandbox_timeout");
        ok(!(error instanceof sdk.SandboxIdleTimeoutError), "a lifetime timeout does not say idle");
        equal(await sb.wait({ raiseOnTermination: false }), 124);
        equal(sb.returncode, 124);
      },
      T,
    );

    t.it(
      "an idle sandbox ends after idleTimeoutMs with SandboxIdleTimeoutError (124); a running command keeps it alive",
      async () => {
        const idle = await h.sandbox({ idleTimeoutMs: 800 });
        // Waiting on it is not activity: the wait itself sees the idle timeout.
        const error = await rejects(() => idle.wait(), sdk.SandboxIdleTimeoutError);
        equal(error.code, "sandbox_idle_timeout");
        match(error.message, /idle/);
        ok(error instanceof sdk.SandboxTimeoutError, "an idle timeout is a kind of SandboxTimeoutError");
        equal(idle.returncode, 124);
        equal(await idle.wait({ raiseOnTermination: false }), 124);
        await rejects(() => idle.exec(["true"]), sdk.SandboxIdleTimeoutError);
        const busy = await h.sandbox({ idleTimeoutMs: 800 });
        const p = await busy.exec(["sleep", "2"]);
        equal(await p.wait(), 0);
        equal(await busy.poll(), null, "a sandbox with a running command is not idle");
      },
      T,
    );

    t.it(
      "wait with timeoutMs gives up with TimeoutError and the sandbox keeps running",
      async () => {
        const sb = await h.sandbox();
        await rejects(() => sb.wait({ timeoutMs: 300 }), sdk.TimeoutError);
        equal(await sb.poll(), null);
      },
      T,
    );

    t.it(
      "tags: set, get and list by tag",
      async () => {
        const marker = Math.random().toString(36).slice(2, 10);
        const sb = await h.sandbox({ tags: { role: "worker", marker } });
        deepEqual(await sb.getTags(), { role: "worker", marker });
        await sb.setTags({ role: "leader", marker });
        deepEqual(await sb.getTags(), { role: "leader", marker });
        const other = await h.sandbox({ tags: { role: "worker", marker } });
        const leaders: string[] = [];
        for await (const s of h.client().sandboxes.list({ app: h.app, tags: { role: "leader", marker } })) {
          leaders.push(s.id);
        }
        deepEqual(leaders, [sb.id]);
        const all: string[] = [];
        for await (const s of h.client().sandboxes.list({ app: h.app, tags: { marker } })) all.push(s.id);
        deepEqual(all.sort(), [sb.id, other.id].sort());
      },
      T,
    );

    t.it(
      "list excludes finished sandboxes unless includeFinished",
      async () => {
        const marker = Math.random().toString(36).slice(2, 10);
        const done = await h.sandbox({ tags: { marker } });
        await done.terminate({ wait: true });
        const running = await h.sandbox({ tags: { marker } });
        const ids = async (includeFinished: boolean) => {
          const out: string[] = [];
          for await (const s of h.client().sandboxes.list({ app: h.app, tags: { marker }, includeFinished })) {
            out.push(s.id);
          }
          return out;
        };
        deepEqual(await ids(false), [running.id]);
        deepEqual((await ids(true)).sort(), [done.id, running.id].sort());
      },
      T,
    );

    t.it(
      "await using terminates the sandbox at scope exit",
      async () => {
        let id = "";
        {
          await using sb = await h.client().sandboxes.create(h.createOptions());
          id = sb.id;
        }
        const after = await h.client().sandboxes.fromId(id);
        equal(await after.wait({ raiseOnTermination: false }), 137);
      },
      T,
    );

    t.it(
      "detach leaves the sandbox running and closes the object",
      async () => {
        const sb = await h.sandbox();
        await sb.detach();
        await rejects(() => sb.poll(), sdk.ClientClosedError);
        const again = await h.client().sandboxes.fromId(sb.id);
        equal(await again.poll(), null);
      },
      T,
    );

    t.it(
      "entrypoint stdout, stderr and stdin",
      async () => {
        const sb = await h.sandbox({ command: ["sh", "-c", "echo hello; echo err >&2"] });
        equal(await sb.stdout.readText(), "hello\n");
        equal(await sb.stderr.readText(), "err\n");
        equal(await sb.wait(), 0);
        const cat = await h.sandbox({ command: ["cat"] });
        await cat.stdin.write("round ");
        await cat.stdin.write("trip\n");
        await cat.stdin.close();
        equal(await cat.stdout.readText(), "round trip\n");
        equal(await cat.wait(), 0);
      },
      T,
    );

    t.it(
      "a closed client rejects calls with ClientClosedError",
      async () => {
        const client = await h.target.makeClient();
        const sb = await client.sandboxes.create(h.createOptions());
        await client.close();
        await rejects(() => client.sandboxes.create(h.createOptions()), sdk.ClientClosedError);
        await rejects(() => sb.poll(), sdk.ClientClosedError);
        await (await h.client().sandboxes.fromId(sb.id)).terminate();
      },
      T,
    );
  });
}
