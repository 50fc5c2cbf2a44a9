/**
 * A known, large output for fault-injection tests: numbered lines alternating between stdout
 * and stderr, with a multi-byte character in every line so cuts land inside characters. The
 * same stream is produced by the fake's handler and, in a real sandbox, by `interleavedScript`.
 */

export interface InterleavedOutput {
  readonly lines: number;
  readonly stdout: string;
  readonly stderr: string;
}

function line(i: number): string {
  return `${String(i).padStart(7, "0")} ${i % 2 === 0 ? "out" : "err"} ✓ ${"x".repeat(i % 13)}\n`;
}

/** The lines needed for about `totalBytes` bytes of output (stdout and stderr together). */
export function interleavedOutput(totalBytes: number): InterleavedOutput {
  const out: string[] = [];
  const err: string[] = [];
  let bytes = 0;
  let i = 0;
  for (; bytes < totalBytes; i++) {
    const text = line(i);
    bytes += text.length + 2; // "✓" is one UTF-16 unit, three UTF-8 bytes
    (i % 2 === 0 ? out : err).push(text);
  }
  return { lines: i, stdout: out.join(""), stderr: err.join("") };
}

/** A python3 program printing the same `lines` lines (for a real sandbox). */
export function interleavedScript(lines: number): string {
  return [
    "import sys",
    "o, e = sys.stdout, sys.stderr",
    `for i in range(${lines}):`,
    "    s = '%07d %s \\u2713 %s\\n' % (i, 'out' if i % 2 == 0 else 'err', 'x' * (i % 13))",
    "    (o if i % 2 == 0 else e).write(s)",
    "o.flush(); e.flush()",
  ].join("\n");
}

/** Writes the same lines through a fake handler's stdout and stderr, in 32 KiB batches. */
export async function writeInterleaved(
  lines: number,
  ctx: {
    stdout: { write(data: string): void };
    stderr: { write(data: string): void };
    sleep(ms: number): Promise<void>;
  },
): Promise<void> {
  let out = "";
  let err = "";
  for (let i = 0; i < lines; i++) {
    if (i % 2 === 0) out += line(i);
    else err += line(i);
    if (out.length + err.length >= 32_768 || i === lines - 1) {
      ctx.stdout.write(out);
      ctx.stderr.write(err);
      out = err = "";
      if (i % 64 === 0) await ctx.sleep(0);
    }
  }
}

/** A small seeded PRNG (mulberry32), so a failing run can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
