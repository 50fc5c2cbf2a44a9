import { equal } from "../assert.js";
import type { Harness, TestApi } from "../target.js";
import { createCall, expectInvalid } from "./invalid-input.js";

const T = 30_000;

export function validationCases(t: TestApi, h: Harness): void {
  const { sdk } = h;
  const invalid = expectInvalid(h);

  t.describe("validation before any request", () => {
    t.it(
      "exec arguments: strings only, at most ARG_MAX_BYTES UTF-8 bytes",
      async () => {
        const sb = await h.sandbox();
        equal(sdk.ARG_MAX_BYTES, 65_536);
        await invalid(() => sb.exec(["echo", 42 as unknown as string]));
        await invalid(() => sb.exec([]));
        // 32,769 two-byte characters: fewer characters than the limit, more bytes.
        await invalid(() => sb.exec(["echo", "é".repeat(32_769)]), /65536|ARG_MAX/);
        const p = await sb.exec(["true", "x".repeat(60_000)]);
        equal(await p.wait(), 0);
      },
      T,
    );

    t.it(
      "create: names, workdir, timeouts, tags, env, resources",
      async () => {
        const create = createCall(h);
        for (const name of ["has space", "../x", "-lead", "x".repeat(65), ""]) await invalid(create({ name }));
        await invalid(create({ app: "bad app" }));
        await invalid(create({ workdir: "relative/path" }));
        await invalid(create({ timeoutMs: -1 }));
        await invalid(create({ timeoutMs: Number.NaN }));
        await invalid(create({ timeoutMs: Number.POSITIVE_INFINITY }));
        await invalid(create({ idleTimeoutMs: -5 }));
        await invalid(create({ tags: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"])) }));
        await invalid(create({ tags: { ["k".repeat(64)]: "v" } }));
        await invalid(create({ tags: { k: "v".repeat(256) } }));
        await invalid(create({ env: { "A=B": "x" } }));
        await invalid(create({ command: ["echo", 1 as unknown as string] }));
        await invalid(create({ cpu: -1 }));
        await invalid(create({ memoryMiB: { request: 512, limit: 256 } }));
      },
      T,
    );

    t.it(
      "exec options: workdir, timeout, modes",
      async () => {
        const sb = await h.sandbox();
        await invalid(() => sb.exec(["pwd"], { workdir: "tmp" }));
        await invalid(() => sb.exec(["true"], { timeoutMs: -1 }));
        await invalid(() => sb.exec(["true"], { mode: "hex" as "text" }));
        await invalid(() => sb.exec(["true"], { stderr: "file" as "pipe" }));
        await invalid(() => sb.exec(["true"], { env: { "": "x" } }));
      },
      T,
    );

    t.it(
      "lookups, waits and tags",
      async () => {
        const sb = await h.sandbox();
        await invalid(() => h.client().sandboxes.fromName("bad name"));
        await invalid(() => h.client().sandboxes.fromId("../etc"));
        await invalid(() => sb.wait({ timeoutMs: -1 }));
        await invalid(() => sb.setTags({ ["x".repeat(64)]: "v" }));
        const p = await sb.exec(["true"]);
        await invalid(() => p.kill("SIGNOPE" as "SIGTERM"));
        await invalid(() => p.stdin.write(42 as unknown as string));
      },
      T,
    );
  });
}
