/**
 * The fake's default handler: a small shell so that common commands behave sensibly with no
 * setup. Sequences with `;`, `&&`, `||` and newlines, single and double quotes, `$VAR`,
 * `>&2` / `1>&2`, and the commands echo, printf, cat, sleep, true, false, exit, pwd, env.
 * Anything else reports "not found" with status 127, like sh.
 */
import { type ExecContext, type ExecResult, isShellScript } from "./handlers.js";

type Separator = ";" | "&&" | "||";
interface SimpleCommand {
  words: string[];
  toStderr: boolean;
}

class ShellExit {
  constructor(readonly code: number) {}
}

/** Splits a script into simple commands and the separators between them. */
export function parseScript(
  script: string,
  env: Readonly<Record<string, string>>,
): { commands: SimpleCommand[]; separators: Separator[] } {
  const commands: SimpleCommand[] = [];
  const separators: Separator[] = [];
  let words: string[] = [];
  let word = "";
  let inWord = false;
  let toStderr = false;
  const endWord = () => {
    if (inWord) words.push(word);
    word = "";
    inWord = false;
  };
  const endCommand = (sep: Separator | undefined) => {
    endWord();
    if (words.length > 0) {
      commands.push({ words, toStderr });
      if (sep) separators.push(sep);
    }
    words = [];
    toStderr = false;
  };
  const expand = (name: string) => env[name] ?? "";
  for (let i = 0; i < script.length; i++) {
    const c = script[i] as string;
    if (c === "'") {
      const end = script.indexOf("'", i + 1);
      word += script.slice(i + 1, end === -1 ? undefined : end);
      inWord = true;
      i = end === -1 ? script.length : end;
    } else if (c === '"') {
      inWord = true;
      for (i++; i < script.length && script[i] !== '"'; i++) {
        const d = script[i] as string;
        if (d === "\\" && i + 1 < script.length && '"\\$`'.includes(script[i + 1] as string)) word += script[++i];
        else if (d === "$") {
          const m = /^\$(\w+|\{\w+\})/.exec(script.slice(i));
          if (m) {
            word += expand((m[1] as string).replace(/[{}]/g, ""));
            i += (m[0] as string).length - 1;
          } else word += d;
        } else word += d;
      }
    } else if (c === "\\" && i + 1 < script.length) {
      word += script[++i];
      inWord = true;
    } else if (c === "$") {
      const m = /^\$(\w+|\{\w+\})/.exec(script.slice(i));
      if (m) {
        word += expand((m[1] as string).replace(/[{}]/g, ""));
        inWord = true;
        i += (m[0] as string).length - 1;
      } else {
        word += c;
        inWord = true;
      }
    } else if (script.startsWith("1>&2", i) || script.startsWith(">&2", i)) {
      endWord();
      toStderr = true;
      i += script.startsWith("1>&2", i) ? 3 : 2;
    } else if (script.startsWith("&&", i) || script.startsWith("||", i)) {
      endCommand(script.slice(i, i + 2) as Separator);
      i++;
    } else if (c === ";" || c === "\n") {
      endCommand(";");
    } else if (c === " " || c === "\t") {
      endWord();
    } else if (c === "#" && !inWord) {
      const nl = script.indexOf("\n", i);
      i = nl === -1 ? script.length : nl - 1;
    } else {
      word += c;
      inWord = true;
    }
  }
  endCommand(undefined);
  return { commands, separators: separators.slice(0, Math.max(0, commands.length - 1)) };
}

const text = (s: string) => s;

function printf(args: string[]): string {
  const [format = "", ...rest] = args;
  let out = "";
  let argIndex = 0;
  const once = () => {
    out += format.replace(/\\n|\\t|\\\\|%s|%d|%%/g, (m) => {
      switch (m) {
        case "\\n":
          return "\n";
        case "\\t":
          return "\t";
        case "\\\\":
          return "\\";
        case "%%":
          return "%";
        case "%d":
          return String(Number.parseInt(rest[argIndex++] ?? "0", 10) || 0);
        default:
          return rest[argIndex++] ?? "";
      }
    });
  };
  once();
  // Like the shell's printf, the format is reused while arguments remain.
  while (argIndex > 0 && argIndex < rest.length) once();
  return out;
}

async function runCommand(ctx: ExecContext, command: SimpleCommand): Promise<number> {
  const [name, ...args] = command.words;
  const out = command.toStderr ? ctx.stderr : ctx.stdout;
  switch (name) {
    case "echo": {
      const noNewline = args[0] === "-n";
      out.write(text((noNewline ? args.slice(1) : args).join(" ") + (noNewline ? "" : "\n")));
      return 0;
    }
    case "printf":
      out.write(printf(args));
      return 0;
    case "cat":
      for await (const chunk of ctx.stdin) out.write(chunk);
      return 0;
    case "sleep": {
      const seconds = Number(args[0] === "infinity" ? Number.POSITIVE_INFINITY : args[0]);
      if (Number.isNaN(seconds)) {
        ctx.stderr.write(`sleep: invalid time interval '${args[0] ?? ""}'\n`);
        return 1;
      }
      await ctx.sleep(Number.isFinite(seconds) ? seconds * 1000 : 2 ** 31 - 1);
      return 0;
    }
    case "true":
    case ":":
      return 0;
    case "false":
      return 1;
    case "exit":
      throw new ShellExit(args[0] === undefined ? 0 : Number.parseInt(args[0], 10) & 0xff);
    case "pwd":
      out.write(`${ctx.workdir}\n`);
      return 0;
    case "env":
      out.write(
        Object.entries(ctx.env)
          .map(([k, v]) => `${k}=${v}\n`)
          .join(""),
      );
      return 0;
    default:
      ctx.stderr.write(`sh: 1: ${name}: not found\n`);
      return 127;
  }
}

/** Runs the process's command through the mini shell. */
export async function miniShell(ctx: ExecContext): Promise<ExecResult> {
  // A plain argv is one command as given; only `sh -c SCRIPT` goes through the parser.
  const { commands, separators } = isShellScript(ctx.argv)
    ? parseScript(ctx.command, ctx.env)
    : { commands: [{ words: [...ctx.argv], toStderr: false }], separators: [] as Separator[] };
  let status = 0;
  try {
    for (let i = 0; i < commands.length; i++) {
      const sep = i === 0 ? undefined : separators[i - 1];
      if (sep === "&&" && status !== 0) continue;
      if (sep === "||" && status === 0) continue;
      status = await runCommand(ctx, commands[i] as SimpleCommand);
    }
  } catch (error) {
    if (error instanceof ShellExit) return error.code;
    throw error;
  }
  return status;
}
