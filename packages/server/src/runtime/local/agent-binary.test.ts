// The agent binaries the build puts in the package: one per architecture, static ELF for the
// right machine, each runnable (the foreign one under Debian's qemu-user-static), shipped by
// the package's `files`; and the runtime picks the one for this machine.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { packagedAgent } from "./agent-binary.js";

const packageRoot = new URL("../../../", import.meta.url).pathname;
const { version } = JSON.parse(readFileSync(`${packageRoot}package.json`, "utf8")) as { version: string };

const ARCHES = [
  { node: "x64", machine: 62, qemu: "qemu-x86_64-static" }, // EM_X86_64
  { node: "arm64", machine: 183, qemu: "qemu-aarch64-static" }, // EM_AARCH64
] as const;

/** The ELF header's machine, and whether it asks for an interpreter or dynamic linking. */
function elf(file: Buffer): { machine: number; static: boolean } {
  expect(file.subarray(0, 4)).toEqual(Buffer.from([0x7f, 0x45, 0x4c, 0x46]));
  expect(file[4]).toBe(2); // 64-bit
  expect(file[5]).toBe(1); // little-endian
  const phoff = Number(file.readBigUInt64LE(32));
  const phentsize = file.readUInt16LE(54);
  const phnum = file.readUInt16LE(56);
  const types = Array.from({ length: phnum }, (_, i) => file.readUInt32LE(phoff + i * phentsize));
  const PT_DYNAMIC = 2;
  const PT_INTERP = 3;
  return { machine: file.readUInt16LE(18), static: !types.includes(PT_INTERP) && !types.includes(PT_DYNAMIC) };
}

describe("the packaged agent", () => {
  it.each(ARCHES)("for $node is a static ELF executable for its machine that runs", ({ node, machine, qemu }) => {
    const binary = packagedAgent(node);
    if (!binary) throw new Error(`no agent for ${node}`);
    expect(elf(readFileSync(binary))).toEqual({ machine, static: true });
    const [command, args] = node === process.arch ? [binary, []] : [qemu, [binary]];
    expect(execFileSync(command, [...args, "--version"], { encoding: "utf8" })).toBe(`sbx-agent ${version}\n`);
  });

  it("is the one for this machine, and none for machines it is not built for", () => {
    expect(packagedAgent()).toBe(packagedAgent(process.arch));
    expect(packagedAgent("ia32")).toBeUndefined();
  });

  it("ships in the package", () => {
    const [pack] = JSON.parse(
      execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
        cwd: packageRoot,
        encoding: "utf8",
        // pnpm's own settings, which npm does not know.
        env: Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("npm_config_"))),
      }),
    ) as [{ files: { path: string; mode: number }[] }];
    for (const name of ["sbx-agent-linux-amd64", "sbx-agent-linux-arm64"]) {
      const entry = pack.files.find((f) => f.path === `dist/agent/${name}`);
      expect(entry, name).toBeDefined();
      expect((entry?.mode ?? 0) & 0o111, `${name} is executable`).not.toBe(0);
    }
  });
});
