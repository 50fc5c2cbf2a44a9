// The noisy neighbours' attackers, in their own process: another tenant's client, so that
// driving the attacks (the flood's 16 exec loops above all) never delays the bench's own
// event loop, which times the neighbour's calls. Started by noisy-neighbours.ts with an IPC
// channel; messages: { start: string[] } → { started: true }, { stop: true } → { stopped: true }.
// Argv: ENDPOINT TOKEN.
import { availableParallelism } from "node:os";
import { type Sandbox, SandboxClient } from "@sbx/node";

const [endpoint, token] = process.argv.slice(2);
const CORES = availableParallelism();
const client = new SandboxClient({ endpoint, token });

/** One attack: starts misbehaving, returns what to stop. */
type Attack = () => Promise<{ sandboxes: Sandbox[]; stop?: () => Promise<void> }>;

const create = (options: { memoryMiB?: number } = {}) => client.sandboxes.create({ app: "noisy", ...options });
const background = async (sb: Sandbox, command: string) => {
  await sb.run(command, { wait: false, timeoutMs: 0 });
};

const attacks: Record<string, Attack> = {
  async bytewise() {
    const sandboxes = await Promise.all([0, 1, 2, 3].map(() => create()));
    const writer = "import os\nwhile True: os.write(1, b'x')";
    await Promise.all(sandboxes.map((sb) => background(sb, `python3 -c "${writer}"`)));
    return { sandboxes };
  },
  async yes() {
    const sb = await create();
    await background(sb, "yes");
    return { sandboxes: [sb] };
  },
  async forkbomb() {
    const sb = await create();
    await background(sb, "bash -c ':(){ :|:& };:'");
    return { sandboxes: [sb] };
  },
  async membomb() {
    const sb = await create({ memoryMiB: 256 });
    const grow = "a = []\nwhile True: a.append(b'x' * (16 << 20))";
    await background(sb, `while true; do python3 -c "${grow}"; done`);
    return { sandboxes: [sb] };
  },
  async flood() {
    const sb = await create();
    let running = true;
    const loop = async () => {
      while (running) await (await sb.exec(["true"])).wait().catch(() => {});
    };
    const loops = Array.from({ length: 16 }, () => loop().catch(() => {}));
    return {
      sandboxes: [sb],
      stop: async () => {
        running = false;
        await Promise.all(loops);
      },
    };
  },
  async diskwrite() {
    const sb = await create();
    await background(sb, "while :; do head -c 256M /dev/zero > /bench.bin; done");
    return { sandboxes: [sb] };
  },
  async spin() {
    const sandboxes = await Promise.all([0, 1, 2, 3].map(() => create()));
    const spinners = Array.from({ length: CORES }, () => "while :; do :; done").join(" & ");
    await Promise.all(sandboxes.map((sb) => background(sb, spinners)));
    return { sandboxes };
  },
};

let running: Awaited<ReturnType<Attack>>[] = [];
process.on("message", async (message: { start?: string[]; stop?: true }) => {
  if (message.start) {
    running = await Promise.all(
      message.start.map((name) => {
        const attack = attacks[name];
        if (!attack) throw new Error(`unknown attack ${name}`);
        return attack();
      }),
    );
    process.send?.({ started: true });
  } else if (message.stop) {
    await Promise.all(running.map((s) => s.stop?.()));
    await Promise.all(running.flatMap((s) => s.sandboxes).map((sb) => sb.terminate().catch(() => {})));
    running = [];
    process.send?.({ stopped: true });
  }
});
process.on("disconnect", () => {
  void client.close().finally(() => process.exit(0));
});
