import { equal, ok } from "../assert.js";
import type { Harness, TestApi } from "../target.js";

const T = 30_000;

export function streamCases(t: TestApi, h: Harness): void {
  t.describe("streams", () => {
    t.it(
      "stdout as a WHATWG ReadableStream",
      async () => {
        const sb = await h.sandbox();
        const p = await sb.exec(["sh", "-c", "echo streamed; echo more"]);
        const readable = p.stdout.readableStream();
        ok(readable instanceof ReadableStream);
        let text = "";
        const reader = readable.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          text += value;
        }
        equal(text, "streamed\nmore\n");
      },
      T,
    );

    t.it(
      "stdin as a WHATWG WritableStream",
      async () => {
        const sb = await h.sandbox();
        const p = await sb.exec(["cat"]);
        const writer = p.stdin.writableStream().getWriter();
        await writer.write("via ");
        await writer.write("writable\n");
        await writer.close();
        equal(await p.stdout.readText(), "via writable\n");
      },
      T,
    );

    t.it(
      "readers share one cursor: what was read is not read again",
      async () => {
        const sb = await h.sandbox();
        const p = await sb.exec(["sh", "-c", "echo first; echo second"]);
        const lines = p.stdout.lines();
        const first = await lines.next();
        equal(first.value, "first");
        await lines.return(undefined);
        await p.wait();
        const rest = await p.stdout.readText();
        ok(rest === "second\n" || rest === "", `unexpected rest ${JSON.stringify(rest)}`);
      },
      T,
    );

    t.it(
      "multi-byte characters survive in text mode",
      async () => {
        const sb = await h.sandbox();
        const text = "héllo wörld — 😀 ✓ 日本語";
        const p = await sb.exec(["echo", text]);
        equal(await p.stdout.readText(), `${text}\n`);
      },
      T,
    );
  });
}
