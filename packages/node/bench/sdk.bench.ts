// SDK overhead benchmarks against the in-process fake server, each with a baseline measured
// in the same run:
//   1. exec → wait round trips through the SDK vs the same two RPCs on a raw Connect client;
//   2. stdout streaming + UTF-8 decoding through the SDK vs a raw TextDecoder loop over the
//      same chunks.
// Run: pnpm bench (or: node packages/node/bench/sdk.bench.ts). Prints ratios; asserts nothing.
import { createClient } from "@connectrpc/connect";
import { SandboxClient } from "@sbx/node";
import { ProcessService } from "@sbx/proto";
import { createFakeServer } from "@sbx/testing";

const ROUND_TRIPS = Number(process.env.SBX_BENCH_ROUND_TRIPS ?? 2000);
const STREAM_MIB = Number(process.env.SBX_BENCH_STREAM_MIB ?? 64);
const CHUNK = 64 * 1024;

const fake = createFakeServer();
const client = new SandboxClient({ transport: fake.transport });
const sandbox = await client.sandboxes.create({ app: "bench" });

async function time(fn: () => Promise<void>): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

// --- 1. exec → wait -------------------------------------------------------------------
const raw = createClient(ProcessService, fake.transport);
let counter = 0;
const rawRoundTrip = async () => {
  const processId = `raw-${counter++}`;
  await raw.startProcess({ sandboxId: sandbox.id, processId, spec: { argv: ["true"] } });
  for (;;) {
    const r = await raw.waitProcess({ sandboxId: sandbox.id, processId, timeoutMs: 10_000 });
    if (r.done) break;
  }
};
const sdkRoundTrip = async () => {
  const p = await sandbox.exec(["true"]);
  await p.wait();
};
for (let i = 0; i < 200; i++) {
  await rawRoundTrip();
  await sdkRoundTrip();
}
const rawMs = await time(async () => {
  for (let i = 0; i < ROUND_TRIPS; i++) await rawRoundTrip();
});
const sdkMs = await time(async () => {
  for (let i = 0; i < ROUND_TRIPS; i++) await sdkRoundTrip();
});
const rawOps = (ROUND_TRIPS / rawMs) * 1000;
const sdkOps = (ROUND_TRIPS / sdkMs) * 1000;

// --- 2. streaming + decoding --------------------------------------------------------------
const line = "sbx streams UTF-8 without splitting characters: héllo wörld 😀 ✓\n";
const encoded = new TextEncoder().encode(line.repeat(Math.ceil(CHUNK / line.length)));
const chunk = encoded.subarray(0, CHUNK);
const chunks = Math.ceil((STREAM_MIB * 1024 * 1024) / CHUNK);
const totalBytes = chunks * CHUNK;

let decodedChars = 0;
const decoderMs = await time(async () => {
  const decoder = new TextDecoder();
  for (let i = 0; i < chunks; i++) decodedChars += decoder.decode(chunk, { stream: true }).length;
  decodedChars += decoder.decode().length;
});

fake.onExec("stream-bench", async ({ stdout }) => {
  for (let i = 0; i < chunks; i++) {
    stdout.write(chunk);
    if (i % 16 === 0) await new Promise((r) => setImmediate(r));
  }
  return 0;
});
let sdkChars = 0;
const sdkStreamMs = await time(async () => {
  const p = await sandbox.exec(["stream-bench"]);
  for await (const text of p.stdout) sdkChars += text.length;
});
if (sdkChars !== decodedChars) throw new Error(`decoded ${sdkChars} chars through the SDK, expected ${decodedChars}`);

const mbps = (ms: number) => totalBytes / 1e6 / (ms / 1000);
console.log(
  JSON.stringify(
    {
      execWaitRoundTrip: {
        rawConnectOpsPerSec: Math.round(rawOps),
        sdkOpsPerSec: Math.round(sdkOps),
        sdkOverheadUsPerOp: Math.round(((sdkMs - rawMs) / ROUND_TRIPS) * 1000),
        ratioSdkToRaw: +(sdkOps / rawOps).toFixed(3),
      },
      streamDecoding: {
        mib: STREAM_MIB,
        rawTextDecoderMBps: Math.round(mbps(decoderMs)),
        sdkStreamMBps: Math.round(mbps(sdkStreamMs)),
        ratioSdkToRaw: +(mbps(sdkStreamMs) / mbps(decoderMs)).toFixed(3),
      },
    },
    null,
    2,
  ),
);

await sandbox.terminate();
await client.close();
await fake.close();
