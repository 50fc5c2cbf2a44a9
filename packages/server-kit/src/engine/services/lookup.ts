/** Finding what an RPC names, or NOT_FOUND saying what was missing. */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Engine } from "../engine.js";
import type { EngineProcess } from "../engine-process.js";
import type { EngineSandbox } from "../engine-sandbox.js";

export function sandboxOf(engine: Engine, id: string): EngineSandbox {
  const sandbox = engine.sandboxes.get(id);
  if (!sandbox) throw new ConnectError(`sandbox ${id} not found`, Code.NotFound);
  return sandbox;
}

export function processOf(engine: Engine, sandboxId: string, processId: string): EngineProcess {
  const process = sandboxOf(engine, sandboxId).processes.get(processId);
  if (!process) throw new ConnectError(`process ${processId} not found in sandbox ${sandboxId}`, Code.NotFound);
  return process;
}
