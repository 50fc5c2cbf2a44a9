// jsr.json (the package as JSR publishes it, from src/) must say what package.json (npm, from
// dist/) says: the same version, the same entry points, the same dependencies.
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const read = (path: string) => JSON.parse(readFileSync(new URL(`../${path}`, import.meta.url), "utf8"));
const pkg = read("package.json");
const jsr = read("jsr.json");

describe("jsr.json", () => {
  it("has package.json's name and version", () => {
    expect(jsr.name).toBe(pkg.name);
    // `changeset version` bumps package.json only: bring jsr.json along.
    expect(jsr.version, "jsr.json version").toBe(pkg.version);
    expect(jsr.license).toBe(pkg.license);
  });

  it("exports the same entry points, each the source of package.json's built file", () => {
    expect(Object.keys(jsr.exports).sort()).toEqual(Object.keys(pkg.exports).sort());
    for (const [entry, target] of Object.entries<{ default: string }>(pkg.exports)) {
      expect(jsr.exports[entry], entry).toBe(target.default.replace(/^\.\/dist\//, "./src/").replace(/\.js$/, ".ts"));
    }
  });

  it("maps every dependency to npm at the version package.json asks for", () => {
    const expected: Record<string, string> = {};
    for (const [name, range] of Object.entries<string>(pkg.dependencies)) {
      // A workspace package is published in lockstep: the exact version of this release.
      const version = range.startsWith("workspace:") ? pkg.version : range;
      expected[name] = `npm:${name}@${version}`;
    }
    expected["@sbx/core/adapter"] = `npm:@sbx/core@${pkg.version}/adapter`;
    expected["@sbx/core/connect"] = `npm:@sbx/core@${pkg.version}/connect`;
    expected["@sbx/core/effect"] = `npm:@sbx/core@${pkg.version}/effect`;
    expect(jsr.imports).toEqual(expected);
  });

  it("sources import each other by their .ts names (Deno and JSR resolve no .js to .ts)", () => {
    const dir = new URL("./", import.meta.url);
    for (const file of readdirSync(dir).filter((f) => f.endsWith(".ts"))) {
      const source = readFileSync(new URL(file, dir), "utf8");
      for (const [, specifier] of source.matchAll(/from "(\.[^"]*)"/g)) {
        expect(specifier, `${file} imports ${specifier}`).toMatch(/\.ts$/);
      }
    }
  });
});
