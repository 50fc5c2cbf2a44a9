/** Starting Deno from the Node side: the binary of the `deno` npm package, and a bounded run of it. */
import { createRequire } from "node:module";

import { type BinaryRun, runBinary } from "./run-binary.ts";

/**
 * The `deno` binary of the `deno` devDependency (the platform's binary comes in its optional
 * dependency, e.g. `@deno/linux-x64-glibc`; the package's own installer finds it, so its
 * postinstall need not run). Missing: fails in CI, skips with a message elsewhere.
 */
export function denoBinary(): string | undefined {
  try {
    const install = createRequire(import.meta.url)("deno/install_api.cjs") as { runInstall(): string };
    return install.runInstall();
  } catch (error) {
    const message = `the deno binary is not installed (the \`deno\` npm package): ${String(error)}`;
    if (process.env.CI) throw new Error(message);
    console.warn(`skipping Deno tests: ${message}`);
    return undefined;
  }
}

/** Runs `deno args…` in this package's folder (see runBinary), never prompting. */
export const runDeno = (
  binary: string,
  args: readonly string[],
  options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<BinaryRun> =>
  runBinary(binary, args, { ...options, env: { DENO_NO_UPDATE_CHECK: "1", DENO_NO_PROMPT: "1", ...options.env } });

/**
 * `--allow-net` for exactly the hosts and ports of `urls` (the targets), nothing else.
 */
export const allowNetTo = (urls: readonly string[]): string =>
  `--allow-net=${[...new Set(urls.map((url) => new URL(url).host))].join(",")}`;
