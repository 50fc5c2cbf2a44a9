/**
 * Browser bundle size: the same minimal app (create a sandbox, run a command, read its
 * output) written with @sbx/web (apps/sbx.ts) and with E2B's `e2b` package (apps/e2b.ts),
 * bundled the same way with esbuild (browser, esm, minified, tree-shaken) and gzipped
 * (level 9). Prints both sizes, the ratio (goal: sbx ≤ 40% of E2B) and where each bundle's
 * bytes go, by package, from esbuild's metafile.
 *
 * `pnpm bench` from the repo root, or `node bench/bundle-size.ts` here after a build.
 * `--json` prints the figures as one JSON object instead.
 */
import { builtinModules } from "node:module";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { build, type Metafile, type Plugin } from "esbuild";

const GOAL = 0.4;
const here = fileURLToPath(new URL(".", import.meta.url));

/**
 * `e2b` imports Node builtins (node:fs, node:os, …) at the top of its browser-facing module.
 * A browser bundler replaces those with empty modules (Vite does); so does this plugin, for
 * both apps alike, so they count (almost) nothing. @sbx/web imports none.
 */
const emptyNodeBuiltins: Plugin = {
  name: "empty-node-builtins",
  setup(b) {
    const builtins = new Set(builtinModules);
    b.onResolve({ filter: /.*/ }, (args) =>
      args.path.startsWith("node:") || builtins.has(args.path) ? { path: args.path, namespace: "empty" } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: "empty" }, () => ({ contents: "export default {};", loader: "js" }));
  },
};

export interface AppBundle {
  readonly name: string;
  readonly minifiedBytes: number;
  readonly gzipBytes: number;
  /** Minified output bytes by package (and by module for the largest packages). */
  readonly byPackage: ReadonlyMap<string, number>;
  readonly byModule: ReadonlyMap<string, number>;
  /** Node builtins the app's dependencies import (replaced with empty modules). */
  readonly nodeBuiltins: readonly string[];
}

/** Which package an input of the metafile belongs to: its npm name, or the workspace package. */
export function packageOf(input: string): string {
  if (input.startsWith("empty:")) return "(node builtins, emptied)";
  const inNodeModules = input.match(/.*node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (inNodeModules) return inNodeModules[1]!;
  const workspace = input.match(/(?:^|\/)packages\/([^/]+)\//);
  if (workspace) {
    if (workspace[1] === "proto") return input.includes("/gen/") ? "@sbx/proto (generated)" : "@sbx/proto";
    return `@sbx/${workspace[1]}`;
  }
  return "(the app)";
}

/** The module inside its package (effect's `Stream`, protobuf's `reflect/…`), for the detail list. */
function moduleOf(input: string): string {
  const pkg = packageOf(input);
  const rest = input.replace(/.*node_modules\/(?:@[^/]+\/)?[^/]+\//, "").replace(/.*packages\/[^/]+\//, "");
  return `${pkg} ${rest.replace(/^dist\/(esm\/)?/, "")}`;
}

export async function bundleApp(name: string, entry: string): Promise<AppBundle> {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    platform: "browser",
    format: "esm",
    target: "es2022",
    minify: true,
    treeShaking: true,
    write: false,
    outdir: "out",
    metafile: true,
    logLevel: "silent",
    plugins: [emptyNodeBuiltins],
  });
  const js = result.outputFiles.find((file) => file.path.endsWith(".js"))!;
  const metafile: Metafile = result.metafile;
  const output = Object.values(metafile.outputs).find((o) => o.entryPoint)!;
  const byPackage = new Map<string, number>();
  const byModule = new Map<string, number>();
  for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
    if (bytesInOutput === 0) continue;
    byPackage.set(packageOf(input), (byPackage.get(packageOf(input)) ?? 0) + bytesInOutput);
    byModule.set(moduleOf(input), (byModule.get(moduleOf(input)) ?? 0) + bytesInOutput);
  }
  const nodeBuiltins = Object.keys(metafile.inputs)
    .filter((input) => input.startsWith("empty:"))
    .map((input) => input.slice("empty:".length));
  return {
    name,
    minifiedBytes: js.contents.byteLength,
    gzipBytes: gzipSync(js.contents, { level: 9 }).byteLength,
    byPackage,
    byModule,
    nodeBuiltins,
  };
}

const kb = (bytes: number) => `${(bytes / 1024).toFixed(1)} KiB`;
const sorted = (map: ReadonlyMap<string, number>) => [...map].sort((a, b) => b[1] - a[1]);

/** The "where the bytes go" table: minified bytes per package, and an estimated gzip share. */
function breakdown(bundle: AppBundle, modules: number): string[] {
  const counted = [...bundle.byPackage.values()].reduce((a, b) => a + b, 0);
  const lines = [`  ${bundle.name}: where the bytes go (minified bytes; gzip estimated pro rata)`];
  for (const [pkg, bytes] of sorted(bundle.byPackage)) {
    const share = bytes / counted;
    lines.push(
      `    ${pkg.padEnd(28)} ${kb(bytes).padStart(10)}  ${(share * 100).toFixed(1).padStart(5)}%  ≈ ${kb(share * bundle.gzipBytes).padStart(9)} gz`,
    );
  }
  if (modules > 0) {
    lines.push(`  ${bundle.name}: largest modules`);
    for (const [mod, bytes] of sorted(bundle.byModule).slice(0, modules)) {
      lines.push(`    ${kb(bytes).padStart(10)}  ${mod}`);
    }
  }
  return lines;
}

if (import.meta.main) {
  const sbx = await bundleApp("sbx (@sbx/web)", `${here}apps/sbx.ts`);
  const e2b = await bundleApp("E2B (e2b)", `${here}apps/e2b.ts`);
  const floor = await bundleApp("protocol only", `${here}apps/connect-only.ts`);
  const ratio = sbx.gzipBytes / e2b.gzipBytes;
  if (process.argv.includes("--json")) {
    const plain = (b: AppBundle) => ({ ...b, byPackage: Object.fromEntries(b.byPackage), byModule: undefined });
    console.log(JSON.stringify({ sbx: plain(sbx), e2b: plain(e2b), floor: plain(floor), ratio, goal: GOAL }, null, 2));
  } else {
    console.log("Browser bundle size: create a sandbox, exec a command, read its output");
    console.log("esbuild: bundle, platform browser, format esm, target es2022, minify, tree shaking; gzip level 9\n");
    for (const b of [sbx, e2b, floor]) {
      console.log(
        `  ${b.name.padEnd(16)} minified ${kb(b.minifiedBytes).padStart(10)}   gzip ${kb(b.gzipBytes).padStart(9)}`,
      );
    }
    console.log(
      "  (protocol only: the same calls through Connect-ES + protobuf-es and nothing else, which @sbx/web no longer uses)",
    );
    console.log(
      `\n  ratio sbx / E2B (gzip): ${ratio.toFixed(2)}   goal ≤ ${GOAL.toFixed(2)}: ${ratio <= GOAL ? "met" : "NOT met"}`,
    );
    console.log(
      `  ratio sbx / E2B (minified): ${(sbx.minifiedBytes / e2b.minifiedBytes).toFixed(2)}\n` +
        `  E2B's Node builtins, replaced with empty modules: ${e2b.nodeBuiltins.join(", ") || "none"}\n`,
    );
    console.log(breakdown(sbx, 25).join("\n"));
    console.log();
    console.log(breakdown(e2b, 10).join("\n"));
    console.log();
    console.log(breakdown(floor, 12).join("\n"));
  }
}
