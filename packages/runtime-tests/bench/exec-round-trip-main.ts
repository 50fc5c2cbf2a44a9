// Run by deno and bun: `… exec-round-trip-main.ts <endpoint> <token> <rounds>`; one JSON line.
import { measureExecRoundTrip } from "./exec-round-trip-runtime.ts";

const args =
  (globalThis as { Deno?: { args: string[] } }).Deno?.args ??
  (globalThis as unknown as { process: { argv: string[] } }).process.argv.slice(2);
const [endpoint, token, rounds] = args as [string, string, string];
console.log(JSON.stringify(await measureExecRoundTrip(endpoint, token, Number(rounds))));
