/**
 * Scripted processes: `onExec(pattern, handler)` registrations, matched against the command
 * a process was started with, and the context a handler gets.
 */

export interface ExecContext {
  readonly argv: readonly string[];
  /** The script of `sh -c SCRIPT` / `bash -c SCRIPT`, otherwise argv joined by spaces. */
  readonly command: string;
  /** The match when the pattern was a RegExp. */
  readonly match: RegExpMatchArray | null;
  readonly env: Readonly<Record<string, string>>;
  /** The user the process runs as: its image's User ("name", "uid", "name:group", "uid:gid"), or "root". */
  readonly user: string;
  readonly workdir: string;
  readonly sandboxId: string;
  readonly processId: string;
  readonly stdout: { write(data: string | Uint8Array): void };
  readonly stderr: { write(data: string | Uint8Array): void };
  /** stdin bytes as they are written, ending at end-of-input; `text()` waits for all of it. */
  readonly stdin: AsyncIterable<Uint8Array> & { text(): Promise<string> };
  /** Aborted when the process is killed, times out, or its sandbox ends. */
  readonly signal: AbortSignal;
  /** Resolves after `ms`, or rejects once the process is killed. */
  sleep(ms: number): Promise<void>;
}

export type ExecResult =
  | { readonly stdout?: string | Uint8Array; readonly stderr?: string | Uint8Array; readonly exitCode?: number }
  | number
  | undefined
  // biome-ignore lint/suspicious/noConfusingVoidType: handlers may simply return nothing
  | void;

export type ExecHandler = (context: ExecContext) => ExecResult | Promise<ExecResult>;
export type ExecPattern = RegExp | string | ((argv: readonly string[]) => boolean);

interface Registration {
  readonly pattern: ExecPattern;
  readonly handler: ExecHandler;
}

const SHELLS = new Set(["sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/sh", "/usr/bin/bash"]);

export const isShellScript = (argv: readonly string[]): boolean =>
  argv.length >= 3 && SHELLS.has(argv[0] as string) && argv[1] === "-c";

/** The command string patterns are matched against. */
export function commandOf(argv: readonly string[]): string {
  return isShellScript(argv) ? (argv[2] as string) : argv.join(" ");
}

export class HandlerRegistry {
  readonly #registrations: Registration[] = [];

  add(pattern: ExecPattern, handler: ExecHandler): void {
    if (!(pattern instanceof RegExp) && typeof pattern !== "string" && typeof pattern !== "function") {
      throw new TypeError("onExec pattern must be a RegExp, a string or a function");
    }
    if (typeof handler !== "function") throw new TypeError("onExec handler must be a function");
    this.#registrations.push({ pattern, handler });
  }

  /** The latest registration matching `argv`, with its RegExp match. */
  find(argv: readonly string[]): { handler: ExecHandler; match: RegExpMatchArray | null } | undefined {
    const command = commandOf(argv);
    for (let i = this.#registrations.length - 1; i >= 0; i--) {
      const { pattern, handler } = this.#registrations[i] as Registration;
      if (pattern instanceof RegExp) {
        const match = command.match(pattern);
        if (match) return { handler, match };
      } else if (typeof pattern === "string") {
        if (command === pattern) return { handler, match: null };
      } else if (pattern(argv)) {
        return { handler, match: null };
      }
    }
    return undefined;
  }
}
