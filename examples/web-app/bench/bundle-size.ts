/**
 * Browser bundle size: the same minimal app (create a sandbox, run a command, read its
 * output) written with @sbx/web (apps/sbx.ts) and with E2B's `e2b` package (apps/e2b.ts),
 * bundled the same way with esbuild (browser, esm, minified, tree-shaken) and gzipped
 * (level 9). What counts is what the page loads at start: code behind `import()` (files, file
 * handles, commands, which the minimal app never calls) is left out, as a splitting bundler
 * (Vite, Rollup, webpack) loads it only on first use; the size with it all in one file is
 * reported beside it. Prints both sizes, the ratio (goal: sbx ≤ 40% of E2B; checked in
 * CI by bundle-size.test.ts) and where each bundle's bytes go, by package, from esbuild's metafile.
 *
 * `pnpm bench` from the repo root, or `node bench/bundle-size.ts` here after a build.
 * `--json` prints the figures as one JSON object instead.
 */
import { builtinModules } from "node:module";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { build, type Metafile, type Plugin } from "esbuild";

/** sbx's start-up bundle may be at most this share of E2B's (gzip); bundle-size.test.ts checks it in CI. */
export const GOAL = 0.4;
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
  /**
   * What the page loads at start: everything but the code behind `import()` (which a splitting
   * bundler puts in chunks fetched on first use; the minimal app never uses them).
   */
  readonly minifiedBytes: number;
  readonly gzipBytes: number;
  /** Everything in one file, `import()`ed code included (what a bundler that never splits ships). */
  readonly unsplitMinifiedBytes: number;
  readonly unsplitGzipBytes: number;
  /** Minified output bytes of the start-up chunks by package (and by module for the largest packages). */
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

/**
 * Leaves every `import()` out of the bundle (external), as a splitting bundler (Vite, Rollup,
 * webpack) puts it in a chunk of its own that the page fetches only when that code runs.
 */
const lazyChunksApart: Plugin = {
  name: "lazy-chunks-apart",
  setup(b) {
    b.onResolve({ filter: /.*/ }, (args) =>
      args.kind === "dynamic-import" ? { path: args.path, external: true } : undefined,
    );
  },
};

/** esbuild as a browser app's bundler would run it, in one file. */
const buildApp = (entry: string, plugins: Plugin[]) =>
  build({
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
    plugins,
  });

export async function bundleApp(name: string, entry: string): Promise<AppBundle> {
  const result = await buildApp(entry, [emptyNodeBuiltins, lazyChunksApart]);
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
  const unsplit = await buildApp(entry, [emptyNodeBuiltins]);
  const unsplitJs = unsplit.outputFiles.find((file) => file.path.endsWith(".js"))!;
  return {
    name,
    minifiedBytes: js.contents.byteLength,
    gzipBytes: gzipSync(js.contents, { level: 9 }).byteLength,
    unsplitMinifiedBytes: unsplitJs.contents.byteLength,
    unsplitGzipBytes: gzipSync(unsplitJs.contents, { level: 9 }).byteLength,
    byPackage,
    byModule,
    nodeBuiltins,
  };
}

/** The benchmark's three apps, bundled, and sbx's ratio to E2B (gzip bytes loaded at start). */
export async function measure(): Promise<{ sbx: AppBundle; e2b: AppBundle; floor: AppBundle; ratio: number }> {
  const sbx = await bundleApp("sbx (@sbx/web)", `${here}apps/sbx.ts`);
  const e2b = await bundleApp("E2B (e2b)", `${here}apps/e2b.ts`);
  const floor = await bundleApp("protocol only", `${here}apps/connect-only.ts`);
  return { sbx, e2b, floor, ratio: sbx.gzipBytes / e2b.gzipBytes };
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
  const { sbx, e2b, floor, ratio } = await measure();
  if (process.argv.includes("--json")) {
    const plain = (b: AppBundle) => ({ ...b, byPackage: Object.fromEntries(b.byPackage), byModule: undefined });
    console.log(JSON.stringify({ sbx: plain(sbx), e2b: plain(e2b), floor: plain(floor), ratio, goal: GOAL }, null, 2));
  } else {
    console.log("Browser bundle size: create a sandbox, exec a command, read its output");
    console.log("esbuild: bundle, platform browser, format esm, target es2022, minify, tree shaking; gzip level 9");
    console.log("at start: import()ed code left out (a splitting bundler loads it on first use); unsplit: all of it\n");
    for (const b of [sbx, e2b, floor]) {
      console.log(
        `  ${b.name.padEnd(16)} at start: minified ${kb(b.minifiedBytes).padStart(10)}   gzip ${kb(b.gzipBytes).padStart(9)} (${b.gzipBytes} B)` +
          `   unsplit: gzip ${kb(b.unsplitGzipBytes).padStart(8)} (${b.unsplitGzipBytes} B)`,
      );
    }
    console.log(
      "  (protocol only: the same calls through Connect-ES + protobuf-es and nothing else, which @sbx/web no longer uses)",
    );
    console.log(
      `\n  ratio sbx / E2B (gzip, at start): ${ratio.toFixed(3)}   goal ≤ ${GOAL.toFixed(2)}: ${ratio <= GOAL ? "met" : "NOT met"}` +
        ` (margin ${Math.floor(GOAL * e2b.gzipBytes) - sbx.gzipBytes} B)` +
        `\n  ratio sbx / E2B (gzip, unsplit): ${(sbx.unsplitGzipBytes / e2b.unsplitGzipBytes).toFixed(3)}`,
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
