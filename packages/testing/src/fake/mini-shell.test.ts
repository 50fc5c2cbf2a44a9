// The mini shell runs what it supports and refuses the rest of sh's syntax (exit 2, a message
// naming the construct, nothing run): it never prints a script's text as if it had run it.
import { type Sandbox, SandboxClient } from "@sbx/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFakeServer } from "../index.js";

const fake = createFakeServer();
const client = new SandboxClient({ transport: fake.transport });
let sb: Sandbox;

beforeAll(async () => {
  sb = await client.sandboxes.create({ env: { NAME: "world" } });
});
afterAll(async () => {
  await client.close();
  await fake.close();
});

const run = async (script: string) => {
  const r = await sb.run(script);
  return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
};

const refusal = (construct: string) =>
  `sbx fake shell: ${construct} not supported; script this command with fake.onExec\n`;

describe("the mini shell refuses syntax it does not run", () => {
  it.each([
    ["echo a | tr a b", "pipes (|) are"],
    ["sleep 1 &", "background commands (&) are"],
    ["echo a & echo b", "background commands (&) are"],
    ["cat < /etc/hosts", "input redirections (<) are"],
    ["cat <<EOF\nhi\nEOF", "here-documents (<<) are"],
    ["cat <<< hi", "here-strings (<<<) are"],
    ["diff <(echo a) <(echo b)", "process substitution (<(...)) is"],
    ["(echo a; echo b)", "subshells and grouping (( )) are"],
    ["echo $(pwd)", "command substitution ($(...)) is"],
    ['echo "in $(pwd)"', "command substitution ($(...)) is"],
    ["echo `pwd`", "command substitution (`...`) is"],
    ['echo "`pwd`"', "command substitution (`...`) is"],
    ["echo $((1 + 2))", "arithmetic expansion ($((...))) is"],
    // biome-ignore lint/suspicious/noTemplateCurlyInString: sh syntax, not a template
    ["echo ${NAME:-x}", "parameter expansion operators (${NAME:-x}) are"],
    // biome-ignore lint/suspicious/noTemplateCurlyInString: sh syntax, not a template
    ['echo "${#NAME}"', "parameter expansion operators (${#NAME}) are"],
    ["false; echo $?", "special and positional parameters ($?) are"],
    ["echo $1", "special and positional parameters ($1) are"],
    ["for i in 1 2; do echo $i; done", "control flow and compound commands (for) are"],
    ["while true; do echo x; done", "control flow and compound commands (while) are"],
    ["if true; then echo yes; fi", "control flow and compound commands (if) are"],
    ["case a in a) echo a;; esac", "control flow and compound commands (case) are"],
    ["{ echo a; echo b; }", "control flow and compound commands ({) are"],
    ["! false", "control flow and compound commands (!) are"],
    ["ls *.txt", "globs (*) are"],
    ["ls file?", "globs (?) are"],
    ["[ -f /x ] && echo yes", "globs and tests ([) are"],
    ["ls ~", "tilde expansion (~) is"],
    ["cd /tmp && ls", "the cd builtin is"],
    ["export A=1; echo $A", "the export builtin is"],
    ["set -e; echo a", "the set builtin is"],
    ["test -f /x", "the test builtin is"],
    ["A=1 echo a", "variable assignments (A=) are"],
    ["echo a 3> /tmp/x", "redirections of descriptor 3 are"],
    ["echo a >&3", "duplicating descriptors other than 1 and 2 (>&N) is"],
  ])("%j", async (script, construct) => {
    // A command before the refused part shows that nothing of the script ran.
    expect(await run(`echo ran; ${script}`)).toEqual({ stdout: "", stderr: refusal(construct), exitCode: 2 });
  });

  it("reports unterminated quotes as sh does", async () => {
    for (const script of ["echo 'a", 'echo "a']) {
      expect(await run(script)).toEqual({
        stdout: "",
        stderr: "sh: 1: Syntax error: Unterminated quoted string\n",
        exitCode: 2,
      });
    }
  });
});

describe("the mini shell still runs what it supports", () => {
  it("sequences, quotes, variables, redirections and comments", async () => {
    expect(await run("echo a && echo b || echo c; false || echo d; false && echo e")).toEqual({
      stdout: "a\nb\nd\n",
      stderr: "",
      exitCode: 1,
    });
    expect(await run(`echo "hello $NAME" '$NAME | * ? ( ) \` < & ~' "\${NAME}!" a\\|b # a | comment`)).toEqual({
      stdout: "hello world $NAME | * ? ( ) ` < & ~ world! a|b\n",
      stderr: "",
      exitCode: 0,
    });
    expect(await run("echo cost: $ 5; echo a~b; echo x=1")).toMatchObject({ stdout: "cost: $ 5\na~b\nx=1\n" });
    expect(await run("echo err >&2; echo out 2>&1; echo gone 2>/dev/null 1>&2")).toEqual({
      stdout: "out\n",
      stderr: "err\n",
      exitCode: 0,
    });
    expect(await run("echo done; echo if then fi")).toMatchObject({ stdout: "done\nif then fi\n", exitCode: 0 });
    expect(await run("printf '%s\\n' a b; exit 3")).toEqual({ stdout: "a\nb\n", stderr: "", exitCode: 3 });
  });

  it("reports unknown commands as not found, like sh", async () => {
    expect(await run("nosuchcmd")).toEqual({ stdout: "", stderr: "sh: 1: nosuchcmd: not found\n", exitCode: 127 });
  });
});
