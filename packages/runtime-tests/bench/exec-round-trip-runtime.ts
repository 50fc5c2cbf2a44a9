/**
 * The runtime side of exec-round-trip.ts: `exec(["true"])` → `wait()` on one sandbox through
 * `@sbx/client`, which resolves to the runtime's own adapter (@sbx/deno, @sbx/bun, @sbx/web in
 * a browser, @sbx/node). Bundled for the browser too, so no Node-only imports.
 */
import { SandboxClient } from "@sbx/client";

export interface RoundTrip {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly mean: number;
}

const WARMUP = 20;

export async function measureExecRoundTrip(endpoint: string, token: string, rounds: number): Promise<RoundTrip> {
  const client = new SandboxClient({ endpoint, token });
  try {
    const sb = await client.sandboxes.create({ app: "bench-runtimes" });
    try {
      const once = async () => (await sb.exec(["true"])).wait();
      for (let i = 0; i < WARMUP; i++) await once();
      const times: number[] = [];
      for (let i = 0; i < rounds; i++) {
        const start = performance.now();
        await once();
        times.push(performance.now() - start);
      }
      const sorted = [...times].sort((a, b) => a - b);
      const at = (p: number) => +(sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0).toFixed(2);
      return { n: rounds, p50: at(0.5), p99: at(0.99), mean: +(times.reduce((a, b) => a + b, 0) / rounds).toFixed(2) };
    } finally {
      await sb.terminate();
    }
  } finally {
    await client.close();
  }
}
