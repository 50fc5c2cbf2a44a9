// The fake's own behaviour beyond the conformance suite: the mini shell's file commands and
// redirections, and filesystem/watch edge cases the real server shares but the suite does not
// pin down.
import {
  type FileWatch,
  type Sandbox,
  SandboxClient,
  SandboxFilesystemError,
  SandboxFilesystemNotFoundError,
} from "@sbx/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFakeServer } from "../index.js";

const fake = createFakeServer();
const client = new SandboxClient({ transport: fake.transport });
let sb: Sandbox;

beforeAll(async () => {
  sb = await client.sandboxes.create({});
});
afterAll(async () => {
  await client.close();
  await fake.close();
});

const run = async (script: string, workdir?: string) => {
  const r = await sb.run(script, workdir ? { workdir } : {});
  return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
};

/** Every event until the watch has been quiet for a moment. */
async function drain(watch: FileWatch): Promise<string[]> {
  const seen: string[] = [];
  setTimeout(() => watch.close(), 100);
  for await (const e of watch) seen.push(`${e.type} ${e.paths.join(" -> ")}`);
  return seen;
}

describe("the mini shell on the fake's files", () => {
  it("redirects output to files, in sh's order", async () => {
    await sb.filesystem.makeDirectory("/sh/r");
    expect(await run("echo a > f; echo b >> f; printf '%s-' x y >> f; cat f", "/sh/r")).toEqual({
      stdout: "a\nb\nx-y-",
      stderr: "",
      exitCode: 0,
    });
    expect(await sb.filesystem.readText("/sh/r/f")).toBe("a\nb\nx-y-");
    expect(await run("echo gone > /sh/r/f; cat /sh/r/f")).toMatchObject({ stdout: "gone\n" });
    expect(await run("> /sh/r/empty")).toMatchObject({ exitCode: 0 });
    expect((await sb.filesystem.stat("/sh/r/empty")).size).toBe(0);
    // 2>&1 duplicates what fd 1 is at that point.
    expect(await run("cat /nope > /sh/r/both 2>&1; cat /sh/r/both")).toMatchObject({
      stdout: "cat: /nope: No such file or directory\n",
      stderr: "",
    });
    expect(await run("echo x 2>/dev/null >&2")).toMatchObject({ stdout: "", stderr: "" });
    expect(await run("echo x >&2 2>/dev/null")).toMatchObject({ stdout: "", stderr: "x\n" });
    expect(await run("echo x 2>/dev/null 1>&2")).toMatchObject({ stdout: "", stderr: "" });
    expect(await run("ls /nope 2>/dev/null")).toEqual({ stdout: "", stderr: "", exitCode: 2 });
    expect(await run("echo x > /sh/r")).toEqual({
      stdout: "",
      stderr: "sh: 1: cannot create /sh/r: Is a directory\n",
      exitCode: 2,
    });
    expect(await run("echo x > /sh/none/f && echo not reached")).toEqual({
      stdout: "",
      stderr: "sh: 1: cannot create /sh/none/f: Directory nonexistent\n",
      exitCode: 2,
    });
    expect(await run("echo >")).toMatchObject({ exitCode: 2, stderr: "sh: 1: Syntax error: newline unexpected\n" });
    // A plain argv is not parsed: ">" is an argument.
    const p = await sb.exec(["echo", "a", ">", "/sh/r/never"]);
    expect(await p.stdout.readText()).toBe("a > /sh/r/never\n");
    await expect(sb.filesystem.stat("/sh/r/never")).rejects.toBeInstanceOf(SandboxFilesystemNotFoundError);
  });

  it("touch, mkdir, rm, mv, ln -s, chmod and ls behave like coreutils", async () => {
    const w = "/sh/c";
    expect(await run(`mkdir -p ${w}/a/b && mkdir ${w}/d && touch ${w}/t && ls ${w}`)).toMatchObject({
      stdout: "a\nd\nt\n",
      exitCode: 0,
    });
    expect(await run(`mkdir ${w}/d`)).toEqual({
      stdout: "",
      stderr: `mkdir: cannot create directory '${w}/d': File exists\n`,
      exitCode: 1,
    });
    expect(await run(`mkdir ${w}/x/y`)).toMatchObject({ exitCode: 1, stderr: expect.stringContaining("No such file") });
    expect(await run(`rm ${w}/a`)).toEqual({
      stdout: "",
      stderr: `rm: cannot remove '${w}/a': Is a directory\n`,
      exitCode: 1,
    });
    expect(await run(`rm -f ${w}/missing && rm -rf ${w}/a`)).toEqual({ stdout: "", stderr: "", exitCode: 0 });
    expect(await run(`rm ${w}/missing`)).toMatchObject({ exitCode: 1 });
    expect(await run("rm -rf /")).toMatchObject({ exitCode: 1, stderr: expect.stringContaining("dangerous") });
    expect(await run("rm -l x")).toMatchObject({ exitCode: 1, stderr: expect.stringContaining("does not support -l") });

    expect(await run(`mv ${w}/t ${w}/u && mv ${w}/u ${w}/d && ls ${w} ${w}/d`)).toMatchObject({
      stdout: `${w}:\nd\n\n${w}/d:\nu\n`,
    });
    expect(await run(`mv ${w}/nope ${w}/x`)).toEqual({
      stdout: "",
      stderr: `mv: cannot stat '${w}/nope': No such file or directory\n`,
      exitCode: 1,
    });
    expect(await run(`mv ${w}/d ${w}/d/inside`)).toMatchObject({ exitCode: 1 });

    expect(await run(`ln -s d/u ${w}/link && cat ${w}/link && ln -s u ${w}/link`)).toMatchObject({ exitCode: 1 });
    expect(await sb.filesystem.stat(`${w}/link`)).toMatchObject({ type: "symlink", symlinkTarget: "d/u" });
    expect(await run(`ln -sf /elsewhere ${w}/link`)).toMatchObject({ exitCode: 0 });
    expect((await sb.filesystem.stat(`${w}/link`)).symlinkTarget).toBe("/elsewhere");
    expect(await run(`ln -s ../x ${w}/d && ln ${w}/d/u ${w}/hard`)).toMatchObject({ exitCode: 1 });
    expect((await sb.filesystem.stat(`${w}/d/x`)).symlinkTarget).toBe("../x"); // made inside the directory

    const mode = async (script: string) => {
      await run(`${script} ${w}/d/u`);
      return (await sb.filesystem.stat(`${w}/d/u`)).mode;
    };
    expect(await mode("chmod +x")).toBe(0o755);
    expect(await mode("chmod go-rx")).toBe(0o700);
    expect(await mode("chmod a=r,u+w")).toBe(0o644);
    expect(await mode("chmod 600")).toBe(0o600);
    expect(await run(`chmod nonsense ${w}/d/u`)).toMatchObject({ exitCode: 1 });

    await sb.filesystem.writeText("", `${w}/.hidden`);
    expect((await run(`ls ${w}`)).stdout).toBe("d\nlink\n");
    expect((await run(`ls -A ${w}`)).stdout).toBe(".hidden\nd\nlink\n");
    expect((await run(`ls -a ${w}`)).stdout).toBe(".\n..\n.hidden\nd\nlink\n");
    expect((await run(`ls ${w}/d/u ${w}/link ${w}`)).stdout).toBe(`${w}/d/u\n${w}/link\n\n${w}:\nd\nlink\n`);
    expect(await run("ls")).toMatchObject({ stdout: "dev\netc\nhome\nmnt\nopt\nroot\nsh\nsrv\ntmp\nusr\nvar\nwork\n" });
  });

  it("cat reads files and stdin, and reports what it cannot read", async () => {
    await sb.filesystem.writeText("file\n", "/sh/cat/f");
    expect(await run("cat /sh/cat/f /sh/cat /sh/cat/f")).toEqual({
      stdout: "file\nfile\n",
      stderr: "cat: /sh/cat: Is a directory\n",
      exitCode: 1,
    });
    await run("chmod 200 /sh/cat/f");
    expect(await run("cat /sh/cat/f")).toMatchObject({ stderr: "cat: /sh/cat/f: Permission denied\n", exitCode: 1 });
    const p = await sb.exec(["cat", "-"]);
    await p.stdin.write("from stdin");
    await p.stdin.close();
    expect(await p.stdout.readText()).toBe("from stdin");
  });
});

describe("the fake's filesystem edge cases", () => {
  it("symlink loops fail, and .. never leaves the root", async () => {
    await run("mkdir -p /edge && ln -s /edge/self /edge/self");
    const error = await sb.filesystem.readText("/edge/self").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SandboxFilesystemError);
    expect((error as Error).message).toContain("Too many levels of symbolic links");
    expect((await sb.filesystem.stat("/../../..")).type).toBe("directory");
    await sb.filesystem.writeText("up", "/../../edge/../edge/up.txt");
    expect(await sb.filesystem.readText("/edge/up.txt")).toBe("up");
    await run("ln -s / /edge/root");
    expect(await sb.filesystem.readText("/edge/root/edge/root/edge/up.txt")).toBe("up");
  });

  it("a recursive watch reports a directory moved in, with its contents, and the watched directory's own removal", async () => {
    await run("mkdir -p /mv/outside/sub /mv/watched && touch /mv/outside/sub/f");
    const watch = sb.filesystem.watch("/mv/watched", { recursive: true });
    await watch.ready;
    await run("mv /mv/outside /mv/watched/in && touch /mv/watched/in/sub/g && rm -r /mv/watched");
    expect(await drain(watch)).toEqual([
      "rename /mv/watched/in",
      "create /mv/watched/in/sub",
      "create /mv/watched/in/sub/f",
      "create /mv/watched/in/sub/g",
      "modify /mv/watched/in/sub/g",
      "delete /mv/watched/in/sub/f",
      "delete /mv/watched/in/sub/g",
      "delete /mv/watched/in/sub",
      "delete /mv/watched/in",
      "delete /mv/watched",
    ]);
  });

  it("a reader that falls more than 10,000 events behind gets an overflow event", async () => {
    await sb.filesystem.makeDirectory("/many");
    const watch = sb.filesystem.watch("/many", { filter: ["delete"] });
    await watch.ready;
    const names = Array.from({ length: 6_000 }, (_, i) => `f${i}`).join(" ");
    await run(`touch ${names} && rm f0`, "/many"); // 12,000 events (create, modify) in one go
    const seen = await drain(watch);
    expect(seen[0]).toBe("overflow ");
    expect(seen).toContain("delete /many/f0");
    expect(seen.some((s) => s.startsWith("create"))).toBe(false);
  });

  it("/usr is a read-only mount: nothing in it changes, and it stays where it is", async () => {
    expect(await run("ls /usr")).toMatchObject({ stdout: "bin\nlib\nlocal\nshare\n", exitCode: 0 });
    const rofs = (what: string) => `${what}: Read-only file system\n`;
    expect(await run("chmod 700 /usr/bin")).toMatchObject({
      exitCode: 1,
      stderr: rofs("chmod: cannot access '/usr/bin'"),
    });
    expect(await run("touch /usr/local")).toMatchObject({
      exitCode: 1,
      stderr: rofs("touch: cannot touch '/usr/local'"),
    });
    expect(await run("mv /usr/lib /tmp/lib")).toMatchObject({
      exitCode: 1,
      stderr: rofs("mv: cannot move '/usr/lib' to '/tmp/lib'"),
    });
    expect(await run("rm -r /usr/share")).toMatchObject({
      exitCode: 1,
      stderr: rofs("rm: cannot remove '/usr/share'"),
    });
    // The mount point itself is busy, like any mount point.
    expect(await run("mv /usr /tmp/usr")).toMatchObject({ exitCode: 1, stderr: expect.stringContaining("busy") });
    await expect(sb.filesystem.writeText("x", "/usr/local/bin/tool")).rejects.toThrow(
      "/usr/local/bin/tool: Read-only file system",
    );
    expect(await run("ls /usr")).toMatchObject({ stdout: "bin\nlib\nlocal\nshare\n" });
  });

  it("fault injection knows the filesystem calls", () => {
    expect(() => fake.failNext("writeFile", { code: "unavailable" })).not.toThrow();
    expect(() => fake.failNext("ListFiles", { code: "unavailable" })).not.toThrow();
    // @ts-expect-error: there is no Chmod call (typed callers are told at compile time)
    expect(() => fake.failNext("Chmod", { code: "unavailable" })).toThrow(TypeError);
    fake.clearFaults();
  });
});
