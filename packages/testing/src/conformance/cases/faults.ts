import { bytesEqual, equal, ok, rejects } from "../assert.js";
import { interleavedOutput, seededRandom, writeInterleaved } from "../interleaved.js";
import type { FakeControls, Harness, TestApi } from "../target.js";

const T = 60_000;

/** Numbered lines with multi-byte characters, so cuts land inside characters too. */
function expectedOutput(lines: number): string {
  let out = "";
  for (let i = 0; i < lines; i++) out += `line ${i} héllo wörld 😀 ${"✓".repeat(i % 7)}\n`;
  return out;
}

export function faultCases(t: TestApi, h: Harness, fake: FakeControls): void {
  const { sdk } = h;
  const text = expectedOutput(2_000);
  const bytes = new TextEncoder().encode(text);
  const big = interleavedOutput(20_000_000);
  const huge = interleavedOutput(48_000_000); // 24 MB a stream: more than a handle keeps in memory
  fake.onExec("conformance-huge", (ctx) => writeInterleaved(huge.lines, ctx));
  fake.onExec("conformance-interleaved", (ctx) => writeInterleaved(big.lines, ctx));
  fake.onExec("conformance-generate", async ({ stdout, sleep }) => {
    // Many small, oddly sized chunks, produced over time.
    for (let at = 0, n = 0; at < bytes.byteLength; n++) {
      const size = 1 + ((n * 7919) % 4093);
      stdout.write(bytes.subarray(at, at + size));
      at += size;
      if (n % 50 === 0) await sleep(1);
    }
    return { exitCode: 0 };
  });

  t.describe("faults (fake server)", () => {
    t.it(
      "transient failures are retried: exec still runs once",
      async () => {
        const sb = await h.sandbox();
        fake.failNext("exec", { code: "unavailable", times: 2 });
        const before = fake.calls.filter((c) => c.method === "StartProcess").length;
        const p = await sb.exec(["echo", "once"]);
        equal(await p.stdout.readText(), "once\n");
        equal(fake.calls.filter((c) => c.method === "StartProcess").length - before, 3);
      },
      T,
    );

    t.it(
      "a create whose response was lost is not repeated (idempotency key)",
      async () => {
        const marker = Math.random().toString(36).slice(2, 10);
        fake.failNext("create", { code: "unavailable", afterApplying: true });
        const sb = await h.sandbox({ tags: { marker } });
        const ids: string[] = [];
        for await (const s of h.client().sandboxes.list({ app: h.app, tags: { marker } })) ids.push(s.id);
        equal(ids.length, 1, "exactly one sandbox was created");
        equal(ids[0], sb.id);
      },
      T,
    );

    t.it(
      "stdin writes retried after a lost response are applied once",
      async () => {
        const sb = await h.sandbox();
        const p = await sb.exec(["cat"]);
        fake.failNext("write", { code: "unavailable", afterApplying: true, times: 2 });
        await p.stdin.write("exactly ");
        await p.stdin.write("once\n");
        await p.stdin.close();
        equal(await p.stdout.readText(), "exactly once\n");
      },
      T,
    );

    t.it(
      "permanent errors are not retried",
      async () => {
        const sb = await h.sandbox();
        fake.failNext("exec", { code: "permission_denied" });
        const before = fake.calls.length;
        await rejects(() => sb.exec(["true"]), sdk.AuthenticationError);
        equal(fake.calls.length - before, 1);
      },
      T,
    );

    t.it(
      "a server-sent retry delay is honoured",
      async () => {
        const sb = await h.sandbox();
        fake.failNext("exec", { code: "resource_exhausted", retryAfterMs: 200 });
        const p = await sb.exec(["echo", "later"]);
        equal(await p.stdout.readText(), "later\n");
        fake.failNext("exec", { code: "resource_exhausted" });
        await rejects(() => sb.exec(["true"]), sdk.QuotaExceededError);
      },
      T,
    );

    for (const afterBytes of [0, 1, 2, 3, 4_093, 65_537]) {
      t.it(
        `output cut after ${afterBytes} bytes resumes with exactly the same bytes`,
        async () => {
          const sb = await h.sandbox();
          const p = await sb.exec(["conformance-generate"]);
          fake.cutStreams({ afterBytes, times: 5 });
          equal(await p.stdout.readText(), text);
          const q = await sb.exec(["conformance-generate"], { mode: "binary" });
          fake.cutStreams({ afterBytes: afterBytes + 17, times: 5 });
          bytesEqual(await q.stdout.readBytes(), bytes);
          const r = await sb.exec(["conformance-generate"]);
          fake.cutStreams({ afterBytes: afterBytes + 1_001, times: 5 });
          let joined = "";
          for await (const chunk of r.stdout) joined += chunk;
          ok(joined === text, "iterated chunks concatenate to the exact output");
        },
        T,
      );
    }

    t.it(
      "a handle that streamed more than it keeps in memory still returns the whole result",
      async () => {
        const sb = await h.sandbox();
        const handle = await sb.run("conformance-huge", { wait: false });
        let chars = 0;
        for await (const chunk of handle) if (chunk.stream === "stdout") chars += chunk.data.length;
        equal(chars, huge.stdout.length);
        fake.cutStreams({ afterBytes: 3_000_000, times: 4 }); // the re-read resumes too
        const result = await handle.result;
        fake.clearFaults();
        ok(result.stdout === huge.stdout, "result.stdout is the whole stream");
        ok(result.stderr === huge.stderr, "result.stderr is the whole stream");
      },
      120_000,
    );

    t.it(
      "200 random cuts across runs of 20 MB interleaved stdout/stderr: every byte once, in order",
      async () => {
        const sb = await h.sandbox();
        const seed = Math.floor(Math.random() * 2 ** 31);
        const random = seededRandom(seed);
        const why = `(replay with seed ${seed})`;
        let cutsMade = 0;
        for (let run = 0; cutsMade < 200 && run < 10; run++) {
          const before = fake.calls.filter((c) => c.method === "ReadOutput").length;
          // Cut points from 0 to ~1 MB: each 10 MB stream is cut about 20 times per run.
          fake.cutStreams({ afterBytes: () => Math.floor(random() * 1_000_000), times: 40 });
          const handle = await sb.run("conformance-interleaved", { wait: false });
          const got = { stdout: [] as string[], stderr: [] as string[] };
          const at = { stdout: 0, stderr: 0 };
          for await (const chunk of handle) {
            equal(chunk.offset, at[chunk.stream], `${chunk.stream} offsets are contiguous ${why}`);
            at[chunk.stream] += utf8Length(chunk.data);
            got[chunk.stream].push(chunk.data);
          }
          ok(got.stdout.join("") === big.stdout, `run ${run}: stdout is byte-identical ${why}`);
          ok(got.stderr.join("") === big.stderr, `run ${run}: stderr is byte-identical ${why}`);
          const reads = fake.calls.filter((c) => c.method === "ReadOutput").length - before;
          cutsMade += reads - 2; // every read after each stream's first follows a cut
          fake.clearFaults();
          const result = await handle.result;
          equal(result.exitCode, 0);
          ok(result.stdout === big.stdout && result.stderr === big.stderr, `run ${run}: result ${why}`);
        }
        ok(cutsMade >= 200, `at least 200 cuts were made (${cutsMade}) ${why}`);
      },
      180_000,
    );
  });
}

function utf8Length(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}
