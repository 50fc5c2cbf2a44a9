/** Everything one fake server holds: sandboxes, idempotency keys and the exec handlers. */
import { Code, ConnectError } from "@connectrpc/connect";
import { HandlerRegistry } from "./handlers.js";
import type { FakeProcess, FakeSandbox } from "./model.js";

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

export class FakeState {
  readonly sandboxes = new Map<string, FakeSandbox>();
  readonly byRequestId = new Map<string, FakeSandbox>();
  readonly handlers = new HandlerRegistry();
  #pid = 100;
  #sequence = 0;

  constructor(
    readonly defaultHandlers: boolean,
    /** Bytes of output kept per process stream; undefined: the server's default. */
    readonly outputRetentionBytes?: number,
  ) {}

  nextPid = (): number => this.#pid++;
  nextSequence = (): number => this.#sequence++;

  newSandboxId(): string {
    let id = "sb-";
    for (let i = 0; i < 20; i++) id += ALPHABET[Math.floor(Math.random() * ALPHABET.length)];
    return id;
  }

  sandbox(id: string): FakeSandbox {
    const sandbox = this.sandboxes.get(id);
    if (!sandbox) throw new ConnectError(`sandbox ${id} not found`, Code.NotFound);
    return sandbox;
  }

  process(sandboxId: string, processId: string): FakeProcess {
    const process = this.sandbox(sandboxId).processes.get(processId);
    if (!process) throw new ConnectError(`process ${processId} not found in sandbox ${sandboxId}`, Code.NotFound);
    return process;
  }

  /** Ends every sandbox (and so every process and timer). */
  shutdown(finish: (sandbox: FakeSandbox) => void): void {
    for (const sandbox of this.sandboxes.values()) finish(sandbox);
  }
}
