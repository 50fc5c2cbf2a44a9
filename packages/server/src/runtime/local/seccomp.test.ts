import { describe, expect, it } from "vitest";
import { DENIED_SYSCALLS_X86_64, seccompInstructions, seccompProgram } from "./seccomp.js";

/** Runs the classic BPF program on one syscall, as the kernel would: the verdict it returns. */
function verdict(nr: number, args: readonly number[] = [], arch = 0xc000003e): number {
  const data = new DataView(new ArrayBuffer(64));
  data.setUint32(0, nr, true);
  data.setUint32(4, arch, true);
  for (const [i, arg] of args.entries()) data.setUint32(16 + i * 8, arg, true);
  const program = seccompInstructions();
  let acc = 0;
  for (let pc = 0; pc < program.length; pc++) {
    const [code, jt, jf, k] = program[pc] as [number, number, number, number];
    if (code === 0x20) acc = data.getUint32(k, true);
    else if (code === 0x06) return k;
    else if (code === 0x15) pc += acc === k ? jt : jf;
    else if (code === 0x35) pc += acc >= k ? jt : jf;
    else if (code === 0x45) pc += (acc & k) !== 0 ? jt : jf;
    else if (code === 0x54) acc = (acc & k) >>> 0;
    else throw new Error(`unexpected instruction ${code} at ${pc}`);
  }
  throw new Error("the program ran off its end");
}

const ALLOW = 0x7fff0000;
const errno = (n: number) => 0x00050000 | n;
const EAFNOSUPPORT = 97;
const SOCKET = 41;
const SOCKETPAIR = 53;

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

  it("refuses socket families a sandbox has no business with (EAFNOSUPPORT), for socket and socketpair", () => {
    // AF_VSOCK reaches the hypervisor; the rest are kernel attack surface.
    const refused = {
      AF_UNSPEC: 0,
      AF_AX25: 3,
      AF_KEY: 15,
      AF_PACKET: 17,
      AF_CAN: 29,
      AF_TIPC: 30,
      AF_ALG: 38,
      AF_VSOCK: 40,
      AF_XDP: 44,
    };
    for (const [name, family] of Object.entries(refused)) {
      expect(verdict(SOCKET, [family, 1, 0]), name).toBe(errno(EAFNOSUPPORT));
      expect(verdict(SOCKETPAIR, [family, 1, 0]), name).toBe(errno(EAFNOSUPPORT));
    }
    for (const [name, family] of Object.entries({ AF_UNIX: 1, AF_INET: 2, AF_INET6: 10 })) {
      expect(verdict(SOCKET, [family, 1, 0]), name).toBe(ALLOW);
      expect(verdict(SOCKETPAIR, [family, 1, 0]), name).toBe(ALLOW);
    }
  });

  it("refuses (AF_INET, SOCK_PACKET), a packet socket under another name, whatever the type flags", () => {
    const SOCK_PACKET = 10;
    const SOCK_NONBLOCK = 0x800;
    const SOCK_CLOEXEC = 0x80000;
    for (const type of [SOCK_PACKET, SOCK_PACKET | SOCK_NONBLOCK, SOCK_PACKET | SOCK_CLOEXEC | SOCK_NONBLOCK]) {
      expect(verdict(SOCKET, [2, type, 0x0300]), `type ${type}`).toBe(errno(EAFNOSUPPORT));
      expect(verdict(SOCKETPAIR, [2, type, 0]), `type ${type}`).toBe(errno(EAFNOSUPPORT));
    }
    // Every other inet type still passes (stream, dgram, raw, seqpacket), with flags too.
    for (const type of [1, 2, 3, 5, 1 | SOCK_NONBLOCK | SOCK_CLOEXEC, 2 | SOCK_CLOEXEC]) {
      expect(verdict(SOCKET, [2, type, 0]), `type ${type}`).toBe(ALLOW);
    }
    expect(verdict(SOCKET, [10, 2, 0])).toBe(ALLOW); // inet6 dgram
  });

  it("allows netlink for routes (getifaddrs, ip) and socket diagnostics (ss) only", () => {
    expect(verdict(SOCKET, [16, 3, 0])).toBe(ALLOW); // NETLINK_ROUTE
    expect(verdict(SOCKET, [16, 3, 4])).toBe(ALLOW); // NETLINK_SOCK_DIAG
    for (const protocol of [9, 12, 15, 16]) expect(verdict(SOCKET, [16, 3, protocol])).toBe(errno(93)); // audit, netfilter, uevent, generic
  });

  it("still judges every other syscall as before", () => {
    expect(verdict(0)).toBe(ALLOW); // read
    expect(verdict(165)).toBe(errno(1)); // mount
    expect(verdict(435)).toBe(errno(38)); // clone3
    expect(verdict(56, [0x10000000])).toBe(errno(1)); // clone(CLONE_NEWUSER)
    expect(verdict(56, [0x11])).toBe(ALLOW); // clone(SIGCHLD…)
    expect(verdict(42, [40])).toBe(ALLOW); // connect: only socket creation is filtered
    expect(verdict(0, [], 0x40000003)).toBe(0x80000000); // i386: killed
  });
});
