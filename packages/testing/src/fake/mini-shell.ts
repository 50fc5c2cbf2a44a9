/**
 * The fake's default handler: a small shell so that common commands behave sensibly with no
 * setup. Sequences with `;`, `&&`, `||` and newlines, single and double quotes, `$VAR` and
 * `${VAR}`, redirections (`> FILE`, `>> FILE`, `2> FILE`, `2>&1`, `>&2`), and the commands echo,
 * printf, cat, sleep, true, false, exit, pwd, env, whoami, id [-u|-g], plus touch, mkdir [-p], rm [-rf], mv,
 * ls [-aA1], ln -s [-f] and chmod (octal or simple symbolic modes) on the sandbox's in-memory
 * files (relative paths are taken from the process's workdir). Any other command reports
 * "not found" with status 127, like sh. Shell syntax it does not run (pipes, control flow,
 * subshells, substitutions, globs, here-documents, assignments, builtins such as cd…) is
 * refused before anything runs, with status 2 and a message naming it: a test must never pass
 * on a command the fake only pretended to run.
 */
import { listDirectory, removePath } from "./fake-files.js";
import type { FakeFileWriter, FakeTree } from "./fake-tree.js";
import { identityOf } from "./fake-users.js";
import { FakeFsError } from "./fs-errors.js";
import { joinPath } from "./fs-paths.js";
import { type ExecContext, type ExecResult, isShellScript } from "./handlers.js";

type Separator = ";" | "&&" | "||";
type Fd = 1 | 2;
/** `fd>&dup`, or `fd> path` / `fd>> path`, applied in order like sh does. */
type Redirect = { fd: Fd; dup: Fd } | { fd: Fd; path: string; append: boolean };
interface SimpleCommand {
  words: string[];
  redirects: Redirect[];
}

class ShellExit {
  constructor(readonly code: number) {}
}

class ShellSyntaxError extends Error {}

/** Syntax sh would run but the mini shell does not; `construct` reads "pipes (|) are". */
class UnsupportedSyntax extends Error {
  constructor(readonly construct: string) {
    super(`sbx fake shell: ${construct} not supported; script this command with fake.onExec`);
  }
}

/** Reserved words that open or belong to compound commands, when they start a command. */
const KEYWORDS = new Set([
  ...["if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac", "select"],
  ...["function", "{", "}", "!", "[[", "]]"],
]);
/** Builtins of sh (the mini shell runs none of them; a refusal beats "not found"). */
const BUILTINS = new Set([
  ...["cd", "export", "unset", "set", "shift", "read", "eval", "exec", "source", ".", "trap", "wait"],
  ...["local", "return", "break", "continue", "alias", "umask", "ulimit", "test"],
]);

/** What a word starting a command is, when the mini shell would not run it. */
function unsupportedCommandWord(raw: string): string | undefined {
  if (KEYWORDS.has(raw)) return `control flow and compound commands (${raw}) are`;
  if (BUILTINS.has(raw)) return `the ${raw} builtin is`;
  if (/^[A-Za-z_]\w*=/.test(raw)) return `variable assignments (${raw.slice(0, raw.indexOf("=") + 1)}) are`;
  return undefined;
}

/**
 * The expansion starting with the `$` at `script[i]`: `$NAME` and `${NAME}` give the variable's
 * value; other expansions are refused; a `$` that starts none is itself (like sh).
 */
function expansionAt(
  script: string,
  i: number,
  env: Readonly<Record<string, string>>,
): { value: string; length: number } {
  const rest = script.slice(i);
  const variable = /^\$([A-Za-z_]\w*|\{[A-Za-z_]\w*\})/.exec(rest);
  if (variable) {
    const name = (variable[1] as string).replace(/[{}]/g, "");
    return { value: env[name] ?? "", length: (variable[0] as string).length };
  }
  if (rest.startsWith("$((")) throw new UnsupportedSyntax("arithmetic expansion ($((...))) is");
  if (rest.startsWith("$(")) throw new UnsupportedSyntax("command substitution ($(...)) is");
  if (rest.startsWith("${")) {
    const close = rest.indexOf("}");
    throw new UnsupportedSyntax(
      `parameter expansion operators (${close === -1 ? rest : rest.slice(0, close + 1)}) are`,
    );
  }
  const special = /^\$([?$#@*!\-0-9])/.exec(rest);
  if (special) throw new UnsupportedSyntax(`special and positional parameters ($${special[1]}) are`);
  return { value: "$", length: 1 };
}

/** Splits a script into simple commands and the separators between them. */
export function parseScript(
  script: string,
  env: Readonly<Record<string, string>>,
): { commands: SimpleCommand[]; separators: Separator[] } {
  const commands: SimpleCommand[] = [];
  const separators: Separator[] = [];
  let words: string[] = [];
  let redirects: Redirect[] = [];
  let word = "";
  let inWord = false;
  /** A `>` waiting for its file name (the next word). */
  let target: { fd: Fd; append: boolean } | undefined;
  /** Where the current word starts in `script`, to see it as written (quotes included). */
  let wordStart = 0;
  const startWord = (at: number) => {
    if (!inWord) wordStart = at;
    inWord = true;
  };
  const endWord = (at: number) => {
    if (inWord) {
      const raw = script.slice(wordStart, at);
      if (target) redirects.push({ ...target, path: word });
      else {
        const refused = words.length === 0 ? unsupportedCommandWord(raw) : undefined;
        if (refused) throw new UnsupportedSyntax(refused);
        words.push(word);
      }
      target = undefined;
    }
    word = "";
    inWord = false;
  };
  const endCommand = (at: number, sep: Separator | undefined) => {
    endWord(at);
    if (target) throw new ShellSyntaxError(`Syntax error: ${sep ? `"${sep}"` : "newline"} unexpected`);
    if (words.length > 0 || redirects.length > 0) {
      commands.push({ words, redirects });
      if (sep) separators.push(sep);
    }
    words = [];
    redirects = [];
  };
  for (let i = 0; i < script.length; i++) {
    const c = script[i] as string;
    if (c === "'") {
      const end = script.indexOf("'", i + 1);
      if (end === -1) throw new ShellSyntaxError("Syntax error: Unterminated quoted string");
      startWord(i);
      word += script.slice(i + 1, end);
      i = end;
    } else if (c === '"') {
      startWord(i);
      for (i++; i < script.length && script[i] !== '"'; i++) {
        const d = script[i] as string;
        if (d === "\\" && i + 1 < script.length && '"\\$`'.includes(script[i + 1] as string)) word += script[++i];
        else if (d === "$") {
          const { value, length } = expansionAt(script, i, env);
          word += value;
          i += length - 1;
        } else if (d === "`") throw new UnsupportedSyntax("command substitution (`...`) is");
        else word += d;
      }
      if (i >= script.length) throw new ShellSyntaxError("Syntax error: Unterminated quoted string");
    } else if (c === "\\" && i + 1 < script.length) {
      startWord(i);
      word += script[++i];
    } else if (c === "$") {
      startWord(i);
      const { value, length } = expansionAt(script, i, env);
      word += value;
      i += length - 1;
    } else if (c === ">" || ((c === "1" || c === "2") && !inWord && script[i + 1] === ">")) {
      if (c === ">" && inWord && /^\d+$/.test(script.slice(wordStart, i))) {
        throw new UnsupportedSyntax(`redirections of descriptor ${script.slice(wordStart, i)} are`);
      }
      endWord(i);
      if (target) throw new ShellSyntaxError("Syntax error: redirection unexpected");
      const fd: Fd = c === "2" ? 2 : 1;
      if (c !== ">") i++;
      const append = script[i + 1] === ">";
      if (append) i++;
      const dup = /^&([12])(?![\w])/.exec(script.slice(i + 1));
      if (dup && !append) {
        redirects.push({ fd, dup: Number(dup[1]) as Fd });
        i += 2;
      } else if (script[i + 1] === "&") {
        throw new UnsupportedSyntax("duplicating descriptors other than 1 and 2 (>&N) is");
      } else if (script[i + 1] === "|") {
        throw new UnsupportedSyntax("clobbering redirections (>|) are");
      } else target = { fd, append };
    } else if (script.startsWith("&&", i) || script.startsWith("||", i)) {
      endCommand(i, script.slice(i, i + 2) as Separator);
      i++;
    } else if (c === ";" || c === "\n") {
      if (script[i + 1] === ";") throw new UnsupportedSyntax("control flow and compound commands (;;) are");
      endCommand(i, ";");
    } else if (c === " " || c === "\t") {
      endWord(i);
    } else if (c === "#" && !inWord) {
      const nl = script.indexOf("\n", i);
      i = nl === -1 ? script.length : nl - 1;
    } else {
      const refused = unsupportedCharacter(script, i, inWord);
      if (refused) throw new UnsupportedSyntax(refused);
      startWord(i);
      word += c;
    }
  }
  endCommand(script.length, undefined);
  return { commands, separators: separators.slice(0, Math.max(0, commands.length - 1)) };
}

/** What an unquoted character outside any word rule starts, when the mini shell would not run it. */
function unsupportedCharacter(script: string, i: number, inWord: boolean): string | undefined {
  const c = script[i];
  switch (c) {
    case "|":
      return "pipes (|) are";
    case "&":
      return "background commands (&) are";
    case "<":
      if (script.startsWith("<<<", i)) return "here-strings (<<<) are";
      if (script.startsWith("<<", i)) return "here-documents (<<) are";
      if (script.startsWith("<(", i)) return "process substitution (<(...)) is";
      return "input redirections (<) are";
    case "(":
    case ")":
      return "subshells and grouping (( )) are";
    case "`":
      return "command substitution (`...`) is";
    case "*":
    case "?":
      return `globs (${c}) are`;
    case "[":
      return "globs and tests ([) are";
    case "~":
      return inWord ? undefined : "tilde expansion (~) is";
    default:
      return undefined;
  }
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

interface Sink {
  write(data: string | Uint8Array): void;
}
interface Io {
  readonly out: Sink;
  readonly err: Sink;
}

const encoder = new TextEncoder();
const fileSink = (file: FakeFileWriter): Sink => ({
  write: (data) => file.write(typeof data === "string" ? encoder.encode(data) : data),
});

/** Splits leading `-xyz` options (until `--` or the first operand) into a set of letters. */
function options(args: string[]): { flags: Set<string>; operands: string[] } {
  const flags = new Set<string>();
  let i = 0;
  for (; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === "--") {
      i++;
      break;
    }
    if (!arg.startsWith("-") || arg === "-") break;
    for (const letter of arg.slice(1)) flags.add(letter);
  }
  return { flags, operands: args.slice(i) };
}

const baseName = (path: string) => {
  const trimmed = path.replace(/\/+$/, "");
  return trimmed === "" ? "/" : trimmed.slice(trimmed.lastIndexOf("/") + 1);
};

/** `chmod` modes: octal, or comma-separated `[ugoa]*[+-=][rwx]*` (umask 022 when no who is given). */
function newMode(spec: string, mode: number): number | undefined {
  if (/^[0-7]{1,4}$/.test(spec)) return Number.parseInt(spec, 8);
  let result = mode;
  for (const clause of spec.split(",")) {
    const m = /^([ugoa]*)([+=-])([rwx]*)$/.exec(clause);
    if (!m) return undefined;
    const [, who = "", op, perms = ""] = m;
    let mask = 0;
    for (const w of who || "a") mask |= { u: 0o700, g: 0o070, o: 0o007, a: 0o777 }[w as "u"] as number;
    let bits = 0;
    for (const p of perms) bits |= { r: 0o444, w: 0o222, x: 0o111 }[p as "r"] as number;
    bits &= mask;
    if (!who) bits &= ~0o022;
    if (op === "+") result |= bits;
    else if (op === "-") result &= ~bits;
    else result = (result & ~mask) | bits;
  }
  return result;
}

/**
 * Runs `fn` for each operand; a failure is reported as `message(operand, error)` (nothing when
 * that is undefined, which also does not count as a failure) and makes the status 1.
 */
function each(
  io: Io,
  operands: string[],
  fn: (operand: string) => void,
  message: (operand: string, e: FakeFsError) => string | undefined,
): number {
  let status = 0;
  for (const operand of operands) {
    try {
      fn(operand);
    } catch (error) {
      if (!(error instanceof FakeFsError)) throw error;
      const text = message(operand, error);
      if (text === undefined) continue;
      io.err.write(`${text}\n`);
      status = 1;
    }
  }
  return status;
}

/** The options a command takes; any other is reported (status `status`). */
function unsupported(io: Io, command: string, flags: Set<string>, allowed: string): boolean {
  const other = [...flags].filter((f) => !allowed.includes(f));
  if (other.length === 0) return false;
  io.err.write(`${command}: the fake's mini shell does not support -${other.join("")} (only -${allowed})\n`);
  return true;
}

function ls(io: Io, fs: FakeTree, at: (p: string) => string, args: string[]): number {
  const { flags, operands } = options(args);
  if (unsupported(io, "ls", flags, "aA1")) return 2;
  const paths = operands.length > 0 ? operands : ["."];
  let status = 0;
  const files: string[] = [];
  const dirs: string[] = [];
  for (const path of paths) {
    try {
      if (fs.isDirectory(at(path))) dirs.push(path);
      else {
        fs.stat(at(path)); // fails for a missing path
        files.push(path);
      }
    } catch (error) {
      if (!(error instanceof FakeFsError)) throw error;
      io.err.write(`ls: cannot access '${path}': ${error.strerror}\n`);
      status = 2;
    }
  }
  const byName = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  let text = files
    .sort(byName)
    .map((f) => `${f}\n`)
    .join("");
  dirs.sort(byName).forEach((dir, i) => {
    let names: string[];
    try {
      names = listDirectory(fs, at(dir)).map((e) => e.name);
    } catch (error) {
      if (!(error instanceof FakeFsError)) throw error;
      io.err.write(`ls: cannot open directory '${dir}': ${error.strerror}\n`);
      status = 2;
      return;
    }
    if (flags.has("a")) names.unshift(".", "..");
    else if (!flags.has("A")) names = names.filter((n) => !n.startsWith("."));
    if (files.length > 0 || i > 0) text += "\n";
    if (paths.length > 1) text += `${dir}:\n`;
    text += names.map((n) => `${n}\n`).join("");
  });
  io.out.write(text);
  return status;
}

async function runCommand(ctx: ExecContext, fs: FakeTree, command: SimpleCommand): Promise<number> {
  const at = (path: string) => (path.startsWith("/") ? path : joinPath(ctx.workdir, path));
  const fds: Record<Fd, Sink> = { 1: ctx.stdout, 2: ctx.stderr };
  for (const redirect of command.redirects) {
    if ("dup" in redirect) {
      fds[redirect.fd] = fds[redirect.dup];
      continue;
    }
    try {
      fds[redirect.fd] = fileSink(fs.openWrite(at(redirect.path), redirect.append));
    } catch (error) {
      if (!(error instanceof FakeFsError)) throw error;
      const why = error.code === "ENOENT" ? "Directory nonexistent" : error.strerror;
      fds[2].write(`sh: 1: cannot create ${redirect.path}: ${why}\n`);
      return 2;
    }
  }
  const io: Io = { out: fds[1], err: fds[2] };
  const [name, ...args] = command.words;
  const out = io.out;
  switch (name) {
    case undefined:
      return 0; // only redirections: the files are created
    case "echo": {
      const noNewline = args[0] === "-n";
      out.write(text((noNewline ? args.slice(1) : args).join(" ") + (noNewline ? "" : "\n")));
      return 0;
    }
    case "printf":
      out.write(printf(args));
      return 0;
    case "cat": {
      if (args.length === 0) {
        for await (const chunk of ctx.stdin) out.write(chunk);
        return 0;
      }
      let status = 0;
      for (const arg of args) {
        if (arg === "-") {
          for await (const chunk of ctx.stdin) out.write(chunk);
          continue;
        }
        status |= each(
          io,
          [arg],
          (p) => out.write(fs.readAll(at(p))),
          (p, e) => `cat: ${p}: ${e.strerror}`,
        );
      }
      return status;
    }
    case "touch":
      return each(
        io,
        args,
        (p) => fs.touch(at(p)),
        (p, e) => `touch: cannot touch '${p}': ${e.strerror}`,
      );
    case "mkdir": {
      const { flags, operands } = options(args);
      if (unsupported(io, "mkdir", flags, "p")) return 1;
      return each(
        io,
        operands,
        (p) => (flags.has("p") ? fs.makeParents(at(p)) : fs.mkdir(at(p))),
        (p, e) => `mkdir: cannot create directory '${p}': ${e.code === "EEXIST" ? "File exists" : e.strerror}`,
      );
    }
    case "rm": {
      const { flags, operands } = options(args);
      if (unsupported(io, "rm", flags, "rRf")) return 1;
      const recursive = flags.has("r") || flags.has("R");
      const force = flags.has("f");
      let status = 0;
      for (const operand of operands) {
        if (recursive && at(operand).replace(/\/+$/, "") === "") {
          io.err.write("rm: it is dangerous to operate recursively on '/'\n");
          status = 1;
          continue;
        }
        status |= each(
          io,
          [operand],
          (p) => {
            const info = fs.stat(at(p));
            if (info.type === "directory" && !recursive) throw new FakeFsError("EISDIR", p);
            removePath(fs, at(p), recursive);
          },
          // -f: a missing operand is not an error, and says nothing.
          (p, e) => (force && e.code === "ENOENT" ? undefined : `rm: cannot remove '${p}': ${e.strerror}`),
        );
      }
      return status;
    }
    case "mv": {
      const { flags, operands } = options(args);
      if (unsupported(io, "mv", flags, "f")) return 1;
      if (operands.length < 2) {
        io.err.write("mv: missing destination file operand\n");
        return 1;
      }
      const dest = operands[operands.length - 1] as string;
      const sources = operands.slice(0, -1);
      const into = fs.isDirectory(at(dest));
      if (sources.length > 1 && !into) {
        io.err.write(`mv: target '${dest}' is not a directory\n`);
        return 1;
      }
      return each(
        io,
        sources,
        (src) => {
          fs.stat(at(src));
          fs.rename(at(src), into ? joinPath(at(dest), baseName(src)) : at(dest));
        },
        (src, e) =>
          e.code === "ENOENT" && !fsHas(fs, at(src))
            ? `mv: cannot stat '${src}': ${e.strerror}`
            : `mv: cannot move '${src}' to '${dest}': ${e.strerror}`,
      );
    }
    case "ls":
      return ls(io, fs, at, args);
    case "ln": {
      const { flags, operands } = options(args);
      if (unsupported(io, "ln", flags, "sf")) return 1;
      if (!flags.has("s")) {
        io.err.write("ln: the fake's mini shell makes symbolic links only (ln -s)\n");
        return 1;
      }
      const [target, link = baseName(target ?? "")] = operands;
      if (target === undefined) {
        io.err.write("ln: missing file operand\n");
        return 1;
      }
      const path = fs.isDirectory(at(link)) ? joinPath(at(link), baseName(target)) : at(link);
      return each(
        io,
        [link],
        () => {
          if (flags.has("f") && fsHas(fs, path)) fs.unlink(path);
          fs.symlink(target, path);
        },
        (p, e) => `ln: failed to create symbolic link '${p}': ${e.strerror}`,
      );
    }
    case "chmod": {
      const [spec = "", ...files] = args;
      if (newMode(spec, 0) === undefined) {
        io.err.write(`chmod: invalid mode: '${spec}'\n`);
        return 1;
      }
      return each(
        io,
        files,
        (p) => {
          const mode = newMode(spec, fs.statFollowing(at(p)).mode) as number;
          fs.chmod(at(p), mode);
        },
        (p, e) => `chmod: cannot access '${p}': ${e.strerror}`,
      );
    }
    case "sleep": {
      const seconds = Number(args[0] === "infinity" ? Number.POSITIVE_INFINITY : args[0]);
      if (Number.isNaN(seconds)) {
        io.err.write(`sleep: invalid time interval '${args[0] ?? ""}'\n`);
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
    case "whoami": {
      const who = identityOf(ctx.user, fs);
      if (typeof who === "string" || who.userName === undefined) {
        io.err.write(`whoami: cannot find name for user ID ${typeof who === "string" ? ctx.user : who.uid}\n`);
        return 1;
      }
      out.write(`${who.userName}\n`);
      return 0;
    }
    case "id": {
      const { flags } = options(args);
      if (unsupported(io, "id", flags, "ug")) return 1;
      const who = identityOf(ctx.user, fs);
      if (typeof who === "string") {
        io.err.write(`id: ${who}\n`);
        return 1;
      }
      const named = (id: number, name: string | undefined) => (name === undefined ? `${id}` : `${id}(${name})`);
      if (flags.has("u")) out.write(`${who.uid}\n`);
      else if (flags.has("g")) out.write(`${who.gid}\n`);
      else out.write(`uid=${named(who.uid, who.userName)} gid=${named(who.gid, who.groupName)}\n`);
      return 0;
    }
    case "env":
      out.write(
        Object.entries(ctx.env)
          .map(([k, v]) => `${k}=${v}\n`)
          .join(""),
      );
      return 0;
    default:
      io.err.write(`sh: 1: ${name}: not found\n`);
      return 127;
  }
}

/** Whether anything (a dangling symlink included) is at `path`. */
function fsHas(fs: FakeTree, path: string): boolean {
  try {
    fs.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Runs the process's command through the mini shell, on the sandbox's files `fs`. */
export async function miniShell(ctx: ExecContext, fs: FakeTree): Promise<ExecResult> {
  // A plain argv is one command as given; only `sh -c SCRIPT` goes through the parser.
  let parsed: { commands: SimpleCommand[]; separators: Separator[] };
  try {
    parsed = isShellScript(ctx.argv)
      ? parseScript(ctx.command, ctx.env)
      : { commands: [{ words: [...ctx.argv], redirects: [] }], separators: [] };
  } catch (error) {
    if (error instanceof UnsupportedSyntax) {
      ctx.stderr.write(`${error.message}\n`);
      return 2;
    }
    if (!(error instanceof ShellSyntaxError)) throw error;
    ctx.stderr.write(`sh: 1: ${error.message}\n`);
    return 2;
  }
  const { commands, separators } = parsed;
  let status = 0;
  try {
    for (let i = 0; i < commands.length; i++) {
      const sep = i === 0 ? undefined : separators[i - 1];
      if (sep === "&&" && status !== 0) continue;
      if (sep === "||" && status === 0) continue;
      try {
        status = await runCommand(ctx, fs, commands[i] as SimpleCommand);
      } catch (error) {
        // A write into a redirected file failed (the disk limit): the command stops, like echo would.
        if (!(error instanceof FakeFsError)) throw error;
        ctx.stderr.write(`sh: 1: ${(commands[i] as SimpleCommand).words[0]}: ${error.strerror}\n`);
        status = 1;
      }
    }
  } catch (error) {
    if (error instanceof ShellExit) return error.code;
    throw error;
  }
  return status;
}
