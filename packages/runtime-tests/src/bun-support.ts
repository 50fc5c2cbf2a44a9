/** Starting Bun from the Node side: the binary of the `bun` npm package, and a bounded run of it. */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { runBinary } from "./run-binary.ts";

/**
 * The `bun` binary the `bun` devDependency installed (its postinstall puts the platform's
 * binary at bin/bun.exe). Missing: fails in CI, skips with a message elsewhere.
 */
export function bunBinary(): string | undefined {
  let binary: string | undefined;
  try {
    const pkg = createRequire(import.meta.url).resolve("bun/package.json");
    binary = join(dirname(pkg), "bin", "bun.exe");
  } catch {}
  if (binary && existsSync(binary)) return binary;
  const message = "the bun binary is not installed (pnpm install installs the `bun` package and runs its postinstall)";
  if (process.env.CI) throw new Error(message);
  console.warn(`skipping Bun tests: ${message}`);
  return undefined;
}

/** Runs `bun args…` in this package's folder (see runBinary). */
export const runBun = runBinary;
