// Loaded into the bench's server process (node --import): on SIGUSR2 it prints one line,
// `sbx-probe {json}`, with the event loop's delay and the process's CPU time since the last
// line, then starts over. Bench-only: the server itself never loads this.
import { monitorEventLoopDelay } from "node:perf_hooks";

const delay = monitorEventLoopDelay({ resolution: 10 });
delay.enable();
let cpu = process.cpuUsage();
let since = performance.now();

process.on("SIGUSR2", () => {
  const used = process.cpuUsage(cpu);
  const wallMs = performance.now() - since;
  const ms = (ns: number) => +(ns / 1e6).toFixed(1);
  const line = {
    loopDelayMs: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max) },
    cpuPercent: Math.round(((used.user + used.system) / 1000 / wallMs) * 100),
  };
  process.stdout.write(`sbx-probe ${JSON.stringify(line)}\n`);
  delay.reset();
  cpu = process.cpuUsage();
  since = performance.now();
});
