// What the engine writes to its store for a process (the server keeps it in SQLite, the fake
// nothing; the engine decides when, for both): its record before its start is answered, its
// end at once, its pid soon after the start or with its end, whichever comes first.
import { createRouterTransport } from "@connectrpc/connect";
import { SandboxClient } from "@sbx/core";
import { withConnectClients } from "@sbx/core/connect";
import type { Process } from "@sbx/proto";
import { DEFERRED_WRITE_MS, Engine, engineRoutes, memoryOutputStorage, memoryStateStore } from "@sbx/server-kit";
import { afterEach, describe, expect, it } from "vitest";
import { FakeImageStore } from "./fake-images.js";
import { FakeRuntime } from "./fake-runtime.js";
import { Faults } from "./faults.js";
import { HandlerRegistry } from "./handlers.js";
import { PortRegistry } from "./ports.js";

interface Written {
  readonly running: boolean;
  readonly pid: number;
  readonly exited: boolean;
}

function recordingEngine() {
  const writes = new Map<string, Written[]>();
  const store = {
    ...memoryStateStore(),
    saveProcess(process: Process) {
      const list = writes.get(process.processId) ?? [];
      list.push({ running: process.running, pid: process.pid, exited: process.exitStatus !== undefined });
      writes.set(process.processId, list);
    },
  };
  const images = new FakeImageStore(new Faults(undefined));
  const runtime = new FakeRuntime({
    handlers: new HandlerRegistry(),
    defaultHandlers: true,
    images,
    ports: new PortRegistry(),
  });
  const engine = new Engine({ runtime, store, outputs: memoryOutputStorage(), images });
  const transport = withConnectClients(createRouterTransport(engineRoutes(engine)));
  return { engine, writes, client: new SandboxClient({ transport }) };
}

const until = async (check: () => boolean, what: string) => {
  for (let i = 0; i < 100 && !check(); i++) await new Promise((r) => setTimeout(r, 50));
  if (!check()) throw new Error(`not within 5 s: ${what}`);
};

describe("process records in the store", () => {
  let engine: Engine | undefined;
  afterEach(async () => {
    await engine?.shutdown();
  });

  it("a process that ends at once is written twice: before its start is answered, and at its end", async () => {
    const recording = recordingEngine();
    engine = recording.engine;
    const sb = await recording.client.sandboxes.create({});
    const p = await sb.exec(["true"]);
    expect(recording.writes.get(p.processId)?.[0]).toEqual({ running: true, pid: 0, exited: false });
    expect(await p.wait()).toBe(0);
    await new Promise((r) => setTimeout(r, DEFERRED_WRITE_MS * 2));
    const written = recording.writes.get(p.processId) ?? [];
    expect(written).toHaveLength(2);
    expect(written[1]).toMatchObject({ running: false, exited: true });
    expect(written[1]?.pid).toBeGreaterThan(0);
  });

  it("a running process's pid is written without waiting for its end", async () => {
    const recording = recordingEngine();
    engine = recording.engine;
    const sb = await recording.client.sandboxes.create({});
    const p = await sb.exec(["sleep", "60"]);
    expect(p.pid).toBeGreaterThan(0);
    const last = () => recording.writes.get(p.processId)?.at(-1);
    await until(() => (last()?.pid ?? 0) > 0, "the pid written");
    expect(last()).toEqual({ running: true, pid: p.pid, exited: false });
  });
});
