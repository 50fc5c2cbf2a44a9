/** The contract's input rules (from @sbx/proto) as Connect errors. */
import { Code, ConnectError } from "@connectrpc/connect";
import {
  argvProblem,
  canonicalCidrAllowlist,
  DEFAULT_SANDBOX_TIMEOUT_MS,
  envProblem,
  idProblem,
  MAX_COMMAND_TTL_MS,
  type NetworkPolicy,
  nameProblem,
  networkPolicyProblem,
  type Probe,
  type ProcessSpec,
  type PtySize,
  pathProblem,
  portProblem,
  portsProblem,
  probeIntervalProblem,
  ptySizeProblem,
  type SandboxSpec,
  tagsProblem,
  timeoutProblem,
  workdirProblem,
} from "@sbx/proto";

export const invalid = (message: string) => new ConnectError(message, Code.InvalidArgument);

const check = (problem: string | undefined) => {
  if (problem) throw invalid(problem);
};

export const checkName = (value: string, what: string) => check(nameProblem(value, what));
export const checkId = (value: string, what: string) => check(idProblem(value, what));
export const checkArgv = (argv: readonly string[], what: string, allowEmpty: boolean) =>
  check(argvProblem(argv, what, allowEmpty));
export const checkPath = (path: string) => check(pathProblem(path));
export const checkWorkdir = (workdir: string) => check(workdirProblem(workdir));
export const checkEnv = (env: Readonly<Record<string, string>>) => check(envProblem(env));
export const checkTags = (tags: Readonly<Record<string, string>>) => check(tagsProblem(tags));

/** A process spec's timeouts, lifecycle and terminal size. */
export function checkLifecycle(spec: ProcessSpec): void {
  check(timeoutProblem(spec.timeoutMs, "timeout_ms"));
  if (spec.idleTimeoutMs !== undefined) check(timeoutProblem(spec.idleTimeoutMs, "idle_timeout_ms"));
  if (spec.ttlMs !== undefined) check(timeoutProblem(spec.ttlMs, "ttl_ms", MAX_COMMAND_TTL_MS));
  if (spec.ptySize) check(ptySizeProblem(spec.ptySize.rows, spec.ptySize.cols, true));
  if (spec.ptySize && !spec.pty) throw invalid("pty_size needs pty");
}

export function checkPtySize(size: PtySize | undefined): PtySize {
  if (!size) throw invalid("size is required");
  check(ptySizeProblem(size.rows, size.cols, false));
  return size;
}

/** A sandbox's writable layer: ext4 needs a few MiB of its own; 1 TiB is past any sane sandbox. */
export const MIN_DISK_MIB = 16;
export const MAX_DISK_MIB = 1_048_576;

/**
 * A create's spec, as `sbx server` takes it (the fake refuses the same, with the same codes):
 * fills in the defaults (app, lifetime), puts the allowlist in canonical form, and refuses
 * limits outside what the runtime can honour (INVALID_ARGUMENT). What a driver cannot do yet
 * (its network) is the engine's to refuse (UNIMPLEMENTED).
 */
export function checkSandboxSpec(spec: SandboxSpec): void {
  spec.app ||= "default";
  checkName(spec.app, "app");
  if (spec.name) checkName(spec.name, "name");
  checkArgv(spec.command, "command", true);
  checkWorkdir(spec.workdir);
  checkEnv(spec.env);
  checkTags(spec.tags);
  check(timeoutProblem(spec.timeoutMs, "timeout_ms") ?? timeoutProblem(spec.idleTimeoutMs, "idle_timeout_ms"));
  spec.timeoutMs ||= BigInt(DEFAULT_SANDBOX_TIMEOUT_MS);
  // The image is resolved by the engine (engine-images.ts): its grammar is checked there.
  if (spec.image.length > 1024) throw invalid("image must be at most 1024 characters");
  spec.cidrAllowlist = checkNetworkPolicy(spec);
  check(portsProblem(spec.ports));
  if (spec.readinessProbe) checkProbe(spec.readinessProbe);
  // 0.01 cores: the smallest quota the kernel takes (1 ms per 100 ms period).
  if (spec.cpu?.cores && !(spec.cpu.cores.limit >= 0.01 && spec.cpu.cores.limit <= 64)) {
    throw invalid("cpu limit must be between 0.01 and 64 cores");
  }
  if (spec.memory?.mib && !(spec.memory.mib.limit >= 16 && spec.memory.mib.limit <= 65_536)) {
    throw invalid("memory limit must be between 16 and 65536 MiB");
  }
  if (spec.diskMib && !(spec.diskMib >= MIN_DISK_MIB && spec.diskMib <= MAX_DISK_MIB)) {
    throw invalid(`disk_mib must be between ${MIN_DISK_MIB} and ${MAX_DISK_MIB} MiB, got ${spec.diskMib}`);
  }
}

/**
 * An outbound policy (a create's, an update's): answers its allowlist in canonical form.
 * Ports may go with `block_network` (they are reached through the server).
 */
export function checkNetworkPolicy(policy: Pick<NetworkPolicy, "blockNetwork" | "cidrAllowlist">): string[] {
  const cidrs = canonicalCidrAllowlist(policy.cidrAllowlist);
  if ("problem" in cidrs) throw invalid(cidrs.problem);
  check(networkPolicyProblem(policy.blockNetwork, cidrs));
  return cidrs;
}

/** A readiness probe: a TCP port or a command, and its interval. */
export function checkProbe(probe: Probe): void {
  const kind = probe.kind;
  if (kind.case === "tcpPort") check(portProblem(kind.value, "probe port"));
  else if (kind.case === "exec") checkArgv(kind.value.argv, "probe command", false);
  else throw invalid("a readiness probe needs a TCP port or a command");
  check(probeIntervalProblem(probe.intervalMs));
}
