/**
 * The seccomp filter every sandboxed process runs under, as a classic BPF program for
 * bubblewrap's `--seccomp FD`. It denies (EPERM) the syscalls that reach kernel attack
 * surface or host state a sandbox never needs, refuses namespace-creating clone() flags,
 * answers clone3 with ENOSYS (so libc falls back to clone, which we can inspect), refuses
 * socket families a sandbox has no business with, and kills any process that uses another
 * ABI (x32, i386) to get around the table.
 */

const AUDIT_ARCH_X86_64 = 0xc000003e;
const X32_SYSCALL_BIT = 0x40000000;

const BPF_LD_W_ABS = 0x20;
const BPF_JEQ_K = 0x15;
const BPF_JGE_K = 0x35;
const BPF_JSET_K = 0x45;
const BPF_ALU_AND_K = 0x54;
const BPF_RET_K = 0x06;

const SECCOMP_RET_KILL_PROCESS = 0x80000000;
const SECCOMP_RET_ERRNO = 0x00050000;
const SECCOMP_RET_ALLOW = 0x7fff0000;
const EPERM = 1;
const ENOSYS = 38;
const EPROTONOSUPPORT = 93;
const EAFNOSUPPORT = 97;

/** Offsets into `struct seccomp_data`. */
const NR = 0;
const ARCH = 4;
const ARG0_LOW = 16;
const ARG1_LOW = 24;
const ARG2_LOW = 32;

/** x86_64 numbers of the denied syscalls. */
export const DENIED_SYSCALLS_X86_64: Readonly<Record<string, number>> = {
  ptrace: 101,
  syslog: 103,
  pivot_root: 155,
  adjtimex: 159,
  acct: 163,
  settimeofday: 164,
  mount: 165,
  umount2: 166,
  swapon: 167,
  swapoff: 168,
  reboot: 169,
  iopl: 172,
  ioperm: 173,
  init_module: 175,
  delete_module: 176,
  quotactl: 179,
  nfsservctl: 180,
  lookup_dcookie: 212,
  clock_settime: 227,
  kexec_load: 246,
  add_key: 248,
  request_key: 249,
  keyctl: 250,
  unshare: 272,
  perf_event_open: 298,
  name_to_handle_at: 303,
  open_by_handle_at: 304,
  clock_adjtime: 305,
  setns: 308,
  process_vm_readv: 310,
  process_vm_writev: 311,
  finit_module: 313,
  kexec_file_load: 320,
  bpf: 321,
  userfaultfd: 323,
  io_uring_setup: 425,
  io_uring_enter: 426,
  io_uring_register: 427,
  open_tree: 428,
  move_mount: 429,
  fsopen: 430,
  fsconfig: 431,
  fsmount: 432,
  fspick: 433,
  mount_setattr: 442,
};

const SOCKET = 41;
const SOCKETPAIR = 53;
/** socket()'s type without SOCK_NONBLOCK and SOCK_CLOEXEC (the kernel's SOCK_TYPE_MASK). */
const SOCK_TYPE_MASK = 0xf;
/**
 * The kernel turns (AF_INET, SOCK_PACKET) into an AF_PACKET socket after the family check
 * (an obsolete spelling of packet sockets); only AF_INET gets this, AF_INET6 has no such type.
 */
const SOCK_PACKET = 10;

/**
 * The socket families a sandbox may create; any other is refused with EAFNOSUPPORT, what a
 * kernel built without that family answers, so programs take their "not available" path.
 * Network namespaces confine only inet/inet6 (and netlink, unix is the sandbox's own
 * filesystem): AF_VSOCK reaches the hypervisor, and AF_PACKET, AF_ALG, AF_KEY, AF_BLUETOOTH,
 * AF_CAN, AF_TIPC, AF_RDS… are kernel attack surface no sandbox needs.
 */
export const ALLOWED_SOCKET_FAMILIES: Readonly<Record<string, number>> = {
  AF_UNIX: 1,
  AF_INET: 2,
  AF_INET6: 10,
  AF_NETLINK: 16,
};

/**
 * Netlink protocols a sandbox may use (others: EPROTONOSUPPORT, as for an unknown protocol).
 * NETLINK_ROUTE: getifaddrs() (glibc's getaddrinfo with AI_ADDRCONFIG, Node's
 * os.networkInterfaces(), Python's socket.if_nameindex) and `ip addr`/`ip route`;
 * NETLINK_SOCK_DIAG: `ss`. Both only see the sandbox's own network namespace.
 */
export const ALLOWED_NETLINK_PROTOCOLS: Readonly<Record<string, number>> = {
  NETLINK_ROUTE: 0,
  NETLINK_SOCK_DIAG: 4,
};

const CLONE = 56;
const CLONE3 = 435;
/** CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET (and NEWTIME). */
const CLONE_NAMESPACE_FLAGS =
  0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x00000080;

type Instruction = readonly [code: number, jt: number, jf: number, k: number];

export function seccompInstructions(): Instruction[] {
  const ret = (k: number): Instruction => [BPF_RET_K, 0, 0, k >>> 0];
  const program: Instruction[] = [
    [BPF_LD_W_ABS, 0, 0, ARCH],
    [BPF_JEQ_K, 1, 0, AUDIT_ARCH_X86_64],
    ret(SECCOMP_RET_KILL_PROCESS),
    [BPF_LD_W_ABS, 0, 0, NR],
    [BPF_JGE_K, 0, 1, X32_SYSCALL_BIT],
    ret(SECCOMP_RET_KILL_PROCESS),
  ];
  for (const nr of Object.values(DENIED_SYSCALLS_X86_64)) {
    program.push([BPF_JEQ_K, 0, 1, nr], ret(SECCOMP_RET_ERRNO | EPERM));
  }
  program.push([BPF_JEQ_K, 0, 1, CLONE3], ret(SECCOMP_RET_ERRNO | ENOSYS));
  program.push(...socketFamilyCheck(ret));
  program.push(
    [BPF_JEQ_K, 0, 3, CLONE],
    [BPF_LD_W_ABS, 0, 0, ARG0_LOW],
    [BPF_JSET_K, 0, 1, CLONE_NAMESPACE_FLAGS],
    ret(SECCOMP_RET_ERRNO | EPERM),
  );
  program.push(ret(SECCOMP_RET_ALLOW));
  return program;
}

/**
 * socket(family, type, protocol) and socketpair(family, …): allowed families pass, netlink
 * only for the allowed protocols, inet not with SOCK_PACKET (a packet socket under another
 * name, refused with EAFNOSUPPORT like AF_PACKET itself: what a kernel without packet sockets
 * answers for it). Expects the syscall number loaded; leaves it loaded for what follows (the
 * only path that falls through reloads it).
 */
function socketFamilyCheck(ret: (k: number) => Instruction): Instruction[] {
  const { AF_NETLINK, AF_INET, ...plain } = ALLOWED_SOCKET_FAMILIES;
  const families = Object.values(plain);
  const protocols = Object.values(ALLOWED_NETLINK_PROTOCOLS);
  // Jumps are relative to the next instruction; these are indices within this block.
  const inetTestAt = 3;
  const familyAt = inetTestAt + 1;
  const netlinkAt = familyAt + families.length;
  const protocolAt = netlinkAt + 3; // after the netlink test, the refusal and the protocol load
  const inetAt = protocolAt + protocols.length + 1; // after the protocol tests and their refusal
  const allowAt = inetAt + 4; // after the type load, mask, test and refusal
  const reloadAt = allowAt + 1;
  const jumpTo = (target: number, from: number) => target - from - 1;
  return [
    [BPF_JEQ_K, 1, 0, SOCKET],
    [BPF_JEQ_K, 0, jumpTo(reloadAt, 1), SOCKETPAIR],
    [BPF_LD_W_ABS, 0, 0, ARG0_LOW],
    [BPF_JEQ_K, jumpTo(inetAt, inetTestAt), 0, AF_INET as number],
    ...families.map((family, i): Instruction => [BPF_JEQ_K, jumpTo(allowAt, familyAt + i), 0, family]),
    [BPF_JEQ_K, 1, 0, AF_NETLINK as number],
    ret(SECCOMP_RET_ERRNO | EAFNOSUPPORT),
    [BPF_LD_W_ABS, 0, 0, ARG2_LOW],
    ...protocols.map((protocol, i): Instruction => [BPF_JEQ_K, jumpTo(allowAt, protocolAt + i), 0, protocol]),
    ret(SECCOMP_RET_ERRNO | EPROTONOSUPPORT),
    [BPF_LD_W_ABS, 0, 0, ARG1_LOW],
    [BPF_ALU_AND_K, 0, 0, SOCK_TYPE_MASK],
    [BPF_JEQ_K, 0, 1, SOCK_PACKET],
    ret(SECCOMP_RET_ERRNO | EAFNOSUPPORT),
    ret(SECCOMP_RET_ALLOW),
    [BPF_LD_W_ABS, 0, 0, NR],
  ];
}

/** The program as bytes (`struct sock_filter[]`, little-endian), ready for `--seccomp`. */
export function seccompProgram(): Uint8Array {
  const program = seccompInstructions();
  const bytes = new Uint8Array(program.length * 8);
  const view = new DataView(bytes.buffer);
  program.forEach(([code, jt, jf, k], i) => {
    view.setUint16(i * 8, code, true);
    view.setUint8(i * 8 + 2, jt);
    view.setUint8(i * 8 + 3, jf);
    view.setUint32(i * 8 + 4, k, true);
  });
  return bytes;
}

export const seccompSupported = (arch: string = process.arch): boolean => arch === "x64";
