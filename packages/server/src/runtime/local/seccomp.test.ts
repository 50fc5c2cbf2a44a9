import { describe, expect, it } from "vitest";
import { DENIED_SYSCALLS_X86_64, seccompInstructions, seccompProgram } from "./seccomp.js";

describe("seccomp program", () => {
  it("checks the architecture first and kills on a foreign ABI", () => {
    const program = seccompInstructions();
    expect(program[0]).toEqual([0x20, 0, 0, 4]); // load arch
    expect(program[1]).toEqual([0x15, 1, 0, 0xc000003e]); // x86_64 or…
    expect(program[2]).toEqual([0x06, 0, 0, 0x80000000]); // …kill
    expect(program[4]?.[3]).toBe(0x40000000); // x32 bit → kill
  });

  it("denies every listed syscall with EPERM and allows the rest", () => {
    const program = seccompInstructions();
    for (const nr of Object.values(DENIED_SYSCALLS_X86_64)) {
      const at = program.findIndex(([code, , , k]) => code === 0x15 && k === nr);
      expect(at, `syscall ${nr}`).toBeGreaterThan(0);
      expect(program[at + 1]).toEqual([0x06, 0, 0, 0x00050001]);
    }
    expect(program.at(-1)).toEqual([0x06, 0, 0, 0x7fff0000]);
    for (const name of ["mount", "ptrace", "bpf", "unshare", "setns", "keyctl", "io_uring_setup", "userfaultfd"]) {
      expect(DENIED_SYSCALLS_X86_64[name]).toBeTypeOf("number");
    }
  });

  it("serialises as struct sock_filter[] (8 bytes each, little-endian)", () => {
    const bytes = seccompProgram();
    expect(bytes.byteLength).toBe(seccompInstructions().length * 8);
    const view = new DataView(bytes.buffer);
    expect(view.getUint16(0, true)).toBe(0x20);
    expect(view.getUint32(12, true)).toBe(0xc000003e);
  });
});
