/**
 * The tunnels' data plane: the agent binary's host-side `relay` (agent/relay.go), one process
 * per runtime, started with the first tunnel and ended with the runtime (and with the server:
 * its parent-death signal, its stdin's end). It owns each tunnel's listener, connects each
 * connection to the sandbox's address and moves the bytes with splice(2), so that they never
 * pass through this process's event loop. HTTP/1.x requests are checked and written anew
 * there, as the JavaScript path does it (server-kit's listener-ingress.ts): sbx's token
 * cookies, a caller's X-Verified-User-Data and the sbx_token parameter never reach the app.
 *
 * Requests and answers are JSON lines over its stdin and stdout. A relay that dies unasked is
 * started again, and its tunnels are opened again on the same ports (their connections are
 * lost); a tunnel that cannot be is lost (`lost` settles; logged as an error: between the two,
 * another local user may have taken its port, and the next `tunnels` opens it on another). `close` settles once no connection
 * of the tunnels is left in the relay and none will be made: the sandbox's address may then go
 * to another sandbox.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { lookup } from "node:dns/promises";
import type { Socket } from "node:net";
import { createInterface } from "node:readline";

/** A tunnel in the relay: where it listens; `lost` settles if it goes otherwise than by close. */
export interface RelayTunnel {
  readonly host: string;
  readonly port: number;
  readonly lost: Promise<void>;
}

export interface TunnelRelayOptions {
  /** The agent binary (root's own copy). */
  readonly agent: () => Promise<string>;
  readonly log: (message: string, fields?: Record<string, unknown>, level?: "info" | "error") => void;
  /** Connections of all tunnels at most (default 10,000; fewer when the relay's open-files limit is lower). */
  readonly maxConnections?: number;
  /** Connections of one tunnel at most (default 2,000). */
  readonly maxTunnelConnections?: number;
  /** Connections from one client address, of all tunnels, at most (default 1,000; raise it behind a proxy on one address). */
  readonly maxClientConnections?: number;
}

interface OpenRequest {
  readonly sandboxId: string;
  /** The port in the sandbox. */
  readonly port: number;
  /** The address (or name) to listen on (the server's listen host). */
  readonly host: string;
  /** The sandbox's address. */
  readonly target: string;
}

interface Reply {
  readonly id: number;
  readonly host?: string;
  readonly port?: number;
  readonly error?: string;
}

interface Known {
  request: OpenRequest;
  /** Where it listens, once the relay said so. */
  listenPort: number;
  readonly lose: () => void;
}

interface Relay {
  readonly child: ChildProcess;
  /** Ended: nothing it is asked is answered. */
  dead: string | undefined;
  readonly pending: Map<number, { resolve: (reply: Reply) => void; reject: (error: Error) => void }>;
}

/** A tunnel-route connection to hand over (`adopt`): upgraded and checked, READY not yet sent. */
export interface AdoptRequest {
  readonly sandboxId: string;
  /** The sandbox's address (an IP): its streams dial ports there. */
  readonly address: string;
}

/** How long a handed-over tunnel connection waits for the relay to say it holds it. */
const ADOPT_WAIT_MS = 10_000;

/** How often an unasked end starts it again within RESTART_WINDOW_MS before giving up (until the next open). */
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;

export class TunnelRelay {
  readonly #options: TunnelRelayOptions;
  #relay: Promise<Relay> | undefined;
  #nextId = 1;
  readonly #tunnels = new Map<string, Known>();
  #restarts: number[] = [];
  #stopped = false;

  constructor(options: TunnelRelayOptions) {
    this.#options = options;
  }

  /** Opens a tunnel to `target`, listening on `host` (any free port). */
  async open(request: OpenRequest): Promise<RelayTunnel> {
    if (this.#stopped) throw new Error("the tunnel relay is stopped");
    const key = tunnelKey(request.sandboxId, request.port);
    if (this.#tunnels.has(key))
      throw new Error(`port ${request.port} of sandbox ${request.sandboxId} has a tunnel already`);
    let lose!: () => void;
    const lost = new Promise<void>((resolve) => {
      lose = resolve;
    });
    // Known from now on: a close sent after this open forgets it, even before its answer.
    const known: Known = { request, listenPort: 0, lose };
    this.#tunnels.set(key, known);
    try {
      // The relay resolves no name (it reads no file): the address a listener here would bind.
      const { address } = await lookup(request.host);
      if (this.#tunnels.get(key) !== known)
        throw new Error(`the tunnel to port ${request.port} was closed as it opened`);
      known.request = { ...request, host: address };
      const reply = await this.#open(known.request, 0);
      known.listenPort = reply.port;
      return { host: reply.host, port: reply.port, lost };
    } catch (error) {
      if (this.#tunnels.get(key) === known) this.#tunnels.delete(key);
      throw error;
    }
  }

  /** Closes the sandbox's tunnel to `port` (undefined: all its tunnels) and every connection through them. */
  async close(sandboxId: string, port?: number): Promise<void> {
    for (const [key, known] of this.#tunnels) {
      if (known.request.sandboxId === sandboxId && (port === undefined || known.request.port === port)) {
        this.#tunnels.delete(key);
      }
    }
    if (this.#stopped || !this.#relay) return;
    try {
      await this.#request({ op: "close", sandbox: sandboxId, port: port ?? 0 });
    } catch {
      // (A relay that ended holds no connection any more.)
    }
  }

  /**
   * Hands a tunnel-route connection (sb.connect, sb.tunnel; upgraded, its token and sandbox
   * checked, nothing sent on it yet) to the relay, which serves it from then on
   * (agent/relay_mux.go). The socket goes over the relay's IPC channel, kept open here until the
   * relay holds its copy; then this copy is destroyed (Node's own bookkeeping of the connection
   * ends as for any socket) and only then is the relay told to start: it sends READY, before
   * which a client sends nothing, so no byte of the client's was read here. Rejects when the
   * relay did not take it: the socket is then still this process's to serve.
   */
  async adopt(request: AdoptRequest, socket: Socket): Promise<void> {
    if (this.#stopped) throw new Error("the tunnel relay is stopped");
    this.#relay ??= this.#start();
    const relay = await this.#relay;
    const id = this.#nextId++;
    const reply = await new Promise<Reply>((resolve, reject) => {
      if (relay.dead !== undefined || !relay.child.connected) {
        reject(new Error(`the tunnel relay ended (${relay.dead ?? "its channel is closed"})`));
        return;
      }
      // (A relay that does not answer: the connection is served here; the relay drops its copy
      // unstarted after a while of its own.)
      const timer = setTimeout(() => {
        relay.pending.delete(id);
        reject(new Error(`the tunnel relay did not answer within ${ADOPT_WAIT_MS / 1000} s`));
      }, ADOPT_WAIT_MS);
      timer.unref();
      relay.pending.set(id, {
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      relay.child.send(
        { id, op: "mux", sandbox: request.sandboxId, target: request.address },
        socket,
        { keepOpen: true },
        (error) => {
          if (!error) return;
          relay.pending.get(id)?.reject(error);
          relay.pending.delete(id);
        },
      );
    });
    if (reply.error !== undefined) throw new Error(`the tunnel relay cannot take a tunnel connection: ${reply.error}`);
    // Bytes read here (a client that did not wait for READY) would be lost to the relay, and so
    // would a 101 not yet gone (to a client that does not read).
    const clean = socket.readableLength === 0 && socket.writableLength === 0 && !socket.destroyed;
    socket.destroy();
    const started = await this.#request({ id, op: clean ? "muxStart" : "muxDrop" }).catch((error: Error) => ({
      id,
      error: error.message,
    }));
    if (started.error !== undefined)
      this.#options.log("tunnel relay did not start a tunnel connection", { why: started.error });
  }

  /** Ends the relay and every tunnel with it. */
  stop(): void {
    this.#stopped = true;
    const relay = this.#relay;
    this.#relay = undefined;
    void relay?.then(
      ({ child }) => {
        child.stdin?.destroy();
        child.kill("SIGKILL");
      },
      () => {},
    );
  }

  async #open(request: OpenRequest, listenPort: number): Promise<{ host: string; port: number }> {
    const reply = await this.#request({
      op: "open",
      sandbox: request.sandboxId,
      port: request.port,
      listen: request.host,
      listenPort,
      target: request.target,
    });
    if (reply.error !== undefined) throw new Error(`the tunnel relay cannot open a tunnel: ${reply.error}`);
    if (typeof reply.host !== "string" || !Number.isInteger(reply.port)) {
      throw new Error(`the tunnel relay answered ${JSON.stringify(reply)}`);
    }
    return { host: reply.host, port: reply.port as number };
  }

  async #request(body: Record<string, unknown>): Promise<Reply> {
    this.#relay ??= this.#start();
    const relay = await this.#relay;
    const id = typeof body.id === "number" ? body.id : this.#nextId++;
    return await new Promise<Reply>((resolve, reject) => {
      if (relay.dead !== undefined) {
        reject(new Error(`the tunnel relay ended (${relay.dead})`));
        return;
      }
      relay.pending.set(id, { resolve, reject });
      relay.child.stdin?.write(`${JSON.stringify({ id, ...body })}\n`);
    });
  }

  async #start(): Promise<Relay> {
    const agent = await this.#options.agent();
    const args = ["relay", "--parent", String(process.pid)];
    if (this.#options.maxConnections) args.push("--max-connections", String(this.#options.maxConnections));
    if (this.#options.maxTunnelConnections) {
      args.push("--max-tunnel-connections", String(this.#options.maxTunnelConnections));
    }
    if (this.#options.maxClientConnections) {
      args.push("--max-client-connections", String(this.#options.maxClientConnections));
    }
    // (In a session of its own: a terminal's signals to the server's group are not its; it ends
    // with the server all the same.)
    // (Its fourth descriptor is Node's IPC channel, the only way a socket goes to a child:
    // tunnel-route connections are handed over on it, `adopt`.)
    const child = spawn(agent, args, { stdio: ["pipe", "pipe", "pipe", "ipc"], env: {}, detached: true });
    const relay: Relay = { child, dead: undefined, pending: new Map() };
    // Held for as long as the runtime runs, without keeping the server running.
    child.unref();
    for (const stream of [child.stdin, child.stdout, child.stderr]) {
      (stream as unknown as { unref?: () => void } | null)?.unref?.();
    }
    child.channel?.unref();
    child.on("error", () => {}); // (a send to a relay that ended: its end shows as the exit)
    child.stdin?.on("error", () => {}); // (its end shows as the child's exit)
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      let reply: Reply;
      try {
        reply = JSON.parse(line) as Reply;
      } catch {
        this.#options.log("tunnel relay said something that is not an answer", { line: line.slice(0, 200) });
        return;
      }
      const waiting = relay.pending.get(reply.id);
      relay.pending.delete(reply.id);
      waiting?.resolve(reply);
    });
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", (line) => {
      this.#options.log("tunnel relay", { said: line.slice(0, 2000) });
    });
    const ended = (why: string) => {
      if (relay.dead !== undefined) return;
      relay.dead = why;
      for (const { reject } of relay.pending.values()) reject(new Error(`the tunnel relay ended (${why})`));
      relay.pending.clear();
      if (this.#relay === undefined || this.#stopped) return;
      void this.#relay.then((current) => {
        if (current === relay) this.#restart(why);
      });
    };
    child.once("error", (error) => ended(error.message));
    child.once("exit", (code, signal) => ended(signal ?? `exit ${code}`));
    return relay;
  }

  /** Starts it again after an unasked end and opens its tunnels again on their ports. */
  #restart(why: string): void {
    const now = Date.now();
    this.#restarts = this.#restarts.filter((at) => now - at < RESTART_WINDOW_MS);
    this.#relay = undefined;
    // (One whose open is still unanswered fails, and its opener sees that.)
    const tunnels = [...this.#tunnels.entries()].filter(([, known]) => known.listenPort !== 0);
    if (this.#restarts.length >= MAX_RESTARTS) {
      this.#options.log("tunnel relay ended again; its tunnels are lost", { why, tunnels: tunnels.length }, "error");
      this.#tunnels.clear();
      for (const [, known] of tunnels) known.lose();
      return;
    }
    this.#restarts.push(now);
    this.#options.log("tunnel relay ended unasked; starting it again", { why, tunnels: tunnels.length });
    for (const [key, known] of tunnels) {
      this.#open(known.request, known.listenPort).then(
        (reply) => {
          known.listenPort = reply.port;
        },
        (error: Error) => {
          if (this.#tunnels.get(key) === known) this.#tunnels.delete(key);
          // (Its port may have been taken meanwhile: by another local user's listener, say.)
          this.#options.log(
            "a tunnel is lost: its port could not be listened on again",
            {
              sandboxId: known.request.sandboxId,
              port: known.request.port,
              listenPort: known.listenPort,
              why: error.message,
            },
            "error",
          );
          known.lose();
        },
      );
    }
  }
}

function tunnelKey(sandboxId: string, port: number): string {
  return `${sandboxId} ${port}`;
}
