/**
 * The in-sandbox agent: a static binary built from packages/server/agent (Go) into the package
 * (dist/agent/sbx-agent-linux-<arch>, see scripts/build-agent.ts), one per architecture. The
 * runtime installs the one for this machine into its own root-only dir, and each sandbox gets
 * it bound read-only at /.sbx/agent (launch-command.ts).
 */
import { existsSync } from "node:fs";
import { chmod, chown, copyFile, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Go's names for the architectures the agent is built for, by Node's `process.arch`. */
const GO_ARCH: Partial<Record<NodeJS.Architecture, string>> = { x64: "amd64", arm64: "arm64" };

/** The package's root (this file is in src/runtime/local or dist/runtime/local). */
const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

/** Where the package ships the agent for `arch`, or undefined when it has none for it. */
export function packagedAgent(arch: NodeJS.Architecture = process.arch): string | undefined {
  const goArch = GO_ARCH[arch];
  return goArch ? join(PACKAGE_ROOT, "dist", "agent", `sbx-agent-linux-${goArch}`) : undefined;
}

/** What is in the way of running the agent on this machine (empty: nothing). */
export function agentProblems(): string[] {
  const binary = packagedAgent();
  if (!binary) return [`the sandbox agent is built for x64 and arm64 only, this machine is ${process.arch}`];
  if (!existsSync(binary)) {
    return [
      `the sandbox agent is missing (${binary}): build @sbx/server (pnpm build; it needs Go: apt-get install golang-go)`,
    ];
  }
  return [];
}

/**
 * Copies the packaged agent into `dir` (root's, 0700) as root's own, mode 0555, and returns its
 * path: what sandboxes run never depends on who may write the package's files, and a sandbox
 * started before a reinstall keeps the copy it bound.
 */
export async function installAgent(dir: string): Promise<string> {
  const source = packagedAgent();
  if (!source) throw new Error(agentProblems()[0]);
  const target = join(dir, "sbx-agent");
  const staging = `${target}.installing-${process.pid}`;
  try {
    await copyFile(source, staging);
    await chown(staging, 0, 0);
    await chmod(staging, 0o555);
    await rename(staging, target);
  } catch (error) {
    await rm(staging, { force: true });
    throw error;
  }
  return target;
}
