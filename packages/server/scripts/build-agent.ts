/**
 * Builds the in-sandbox agent (agent/, Go, standard library only) into
 * dist/agent/sbx-agent-linux-<arch> for each architecture the server runs on: static
 * (CGO_ENABLED=0), stripped, reproducible (-trimpath, no build id, no VCS stamp). Run by the
 * package's build; needs Go >= 1.19 (Debian 12's golang-go, see scripts/system-deps.sh).
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Go's names for the architectures, by Node's `process.arch`. */
export const AGENT_ARCHES = { x64: "amd64", arm64: "arm64" } as const;

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

export const agentBinaryName = (goArch: string) => `sbx-agent-linux-${goArch}`;

function build(): void {
  const { version } = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
  const out = join(root, "dist", "agent");
  mkdirSync(out, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CGO_ENABLED: "0",
    GOOS: "linux",
    // Never fetch anything: the agent has no dependencies.
    GOPROXY: "off",
    GOFLAGS: "-mod=mod",
  };
  // Go needs a build cache; a CI user without a home gets one in node_modules.
  if (!process.env.GOCACHE && !process.env.HOME && !process.env.XDG_CACHE_HOME) {
    env.GOCACHE = join(root, "node_modules", ".cache", "go-build");
  }
  for (const goArch of Object.values(AGENT_ARCHES)) {
    const binary = join(out, agentBinaryName(goArch));
    execFileSync(
      "go",
      [
        "build",
        "-trimpath",
        "-buildvcs=false",
        "-ldflags",
        `-s -w -buildid= -X main.version=${version}`,
        "-o",
        binary,
        ".",
      ],
      { cwd: join(root, "agent"), env: { ...env, GOARCH: goArch }, stdio: "inherit" },
    );
    console.log(`build-agent: ${binary} (${(statSync(binary).size / 2 ** 20).toFixed(2)} MiB)`);
  }
}

if (import.meta.main) build();
