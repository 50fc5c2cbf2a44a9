/**
 * Builds the page into `dist/` (or another directory): src/app.ts bundled for browsers with
 * esbuild, next to index.html and style.css. `node build.ts [outdir]`.
 */
import { copyFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = fileURLToPath(new URL(".", import.meta.url));

/** Bundles the page into `outdir`; returns `outdir`. */
export async function buildPage(outdir = join(here, "dist")): Promise<string> {
  await mkdir(outdir, { recursive: true });
  await build({
    entryPoints: [join(here, "src/app.ts")],
    outfile: join(outdir, "app.js"),
    bundle: true,
    platform: "browser",
    format: "esm",
    target: "es2022",
    minify: true,
    sourcemap: true,
    logLevel: "warning",
  });
  await Promise.all(["index.html", "style.css"].map((file) => copyFile(join(here, "src", file), join(outdir, file))));
  return outdir;
}

if (import.meta.main) {
  const outdir = await buildPage(process.argv[2]);
  console.log(`built the page into ${outdir}`);
}
