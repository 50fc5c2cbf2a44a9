// @sbx/web must run in a browser: bundled for the browser, neither entry may import a Node
// builtin (with or without "node:") nor touch `process`, `Buffer` or `require` where a
// browser would throw. The scanner is tested on code that breaks each rule, so a green run
// means something.
import { builtinModules } from "node:module";
import { fileURLToPath } from "node:url";
import { build, type Plugin } from "esbuild";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const packageDir = fileURLToPath(new URL("..", import.meta.url));

const builtins = new Set(builtinModules.flatMap((name) => [name, name.split("/")[0]!]));
const isBuiltin = (specifier: string) => specifier.startsWith("node:") || builtins.has(specifier);

interface Bundle {
  readonly text: string;
  /** Node builtins some module imported or required, with the importer. */
  readonly builtinImports: string[];
  /** The npm packages whose code is in the bundle. */
  readonly packages: Set<string>;
}

/** Bundles `contents` (an entry module) the way a browser app's bundler would. */
async function bundle(contents: string): Promise<Bundle> {
  const builtinImports: string[] = [];
  // Builtins are kept external and recorded (rather than failing the build) so that the test
  // says which module imported which builtin.
  const recordBuiltins: Plugin = {
    name: "record-node-builtins",
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        if (!isBuiltin(args.path)) return undefined;
        builtinImports.push(`${args.path} (${args.kind} in ${args.importer || "<entry>"})`);
        return { path: args.path, external: true };
      });
    },
  };
  const result = await build({
    stdin: { contents, resolveDir: packageDir, sourcefile: "entry.ts", loader: "ts" },
    bundle: true,
    platform: "browser",
    format: "esm",
    minify: true,
    write: false,
    logLevel: "silent",
    metafile: true,
    plugins: [recordBuiltins],
  });
  const output = Object.values(result.metafile.outputs)[0]!;
  const packages = new Set(
    Object.entries(output.inputs)
      .filter(([, input]) => input.bytesInOutput > 0)
      .map(([path]) => /.*node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(path)?.[1])
      .filter((name): name is string => name !== undefined),
  );
  return { text: result.outputFiles[0]!.text, builtinImports, packages };
}

const NODE_GLOBALS = new Set(["process", "Buffer", "require", "__dirname", "__filename", "global"]);

/**
 * Everything in bundled code that would fail in a browser, found on its syntax tree: imports
 * of builtins, and references to Node's globals that no guard protects. A reference is
 * guarded when it is `typeof X`, follows a `typeof X` test in the same `&&` / `||` / `?:` /
 * `if`, or sits in a `try` block. Property names (`e.process`, `{process: …}`) are not
 * references.
 */
function browserProblems(text: string): string[] {
  const source = ts.createSourceFile("bundle.js", text, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS);
  const problems: string[] = [];
  const at = (node: ts.Node) => `…${text.slice(Math.max(0, node.getStart() - 50), node.getEnd() + 50)}…`;
  const builtinSpecifier = (node: ts.Node | undefined) =>
    node !== undefined && ts.isStringLiteralLike(node) && isBuiltin(node.text);
  const visit = (node: ts.Node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && builtinSpecifier(node.moduleSpecifier)) {
      problems.push(`import of a builtin: ${at(node)}`);
    } else if (ts.isCallExpression(node) && builtinSpecifier(node.arguments[0])) {
      const callee = node.expression;
      if (callee.kind === ts.SyntaxKind.ImportKeyword) problems.push(`import() of a builtin: ${at(node)}`);
      else if (ts.isIdentifier(callee) && callee.text === "require") problems.push(`require of a builtin: ${at(node)}`);
      // A "node:" name passed to anything else (a loader) is suspect, except to Node's own
      // `process.getBuiltinModule("node:…")`, reached only where `process` exists.
      else if (
        (node.arguments[0] as ts.StringLiteralLike).text.startsWith("node:") &&
        !(ts.isPropertyAccessExpression(callee) && callee.name.text === "getBuiltinModule")
      )
        problems.push(`a node: module name passed to a call: ${at(node)}`);
    } else if (ts.isIdentifier(node) && NODE_GLOBALS.has(node.text) && isReference(node) && !isGuarded(node)) {
      problems.push(`use of the Node global ${node.text}: ${at(node)}`);
    } else if (
      // `globalThis.process.env`: globalThis.process is undefined in a browser.
      ts.isPropertyAccessExpression(node) &&
      !node.questionDotToken &&
      ts.isPropertyAccessExpression(node.expression) &&
      NODE_GLOBALS.has(node.expression.name.text) &&
      ts.isIdentifier(node.expression.expression) &&
      ["globalThis", "self", "window"].includes(node.expression.expression.text) &&
      !isGuarded(node.expression.name, node.expression.getText())
    ) {
      problems.push(`non-optional access to a Node global: ${at(node)}`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  // esbuild's stand-in for a `require()` it could not bundle throws "Dynamic require of … is
  // not supported" in a browser.
  if (text.includes("Dynamic require of")) problems.push("a require() left in the bundle (esbuild's __require)");
  return problems;
}

/** Is this identifier a reference to a variable (not a property name, key or declaration)? */
function isReference(node: ts.Identifier): boolean {
  const parent = node.parent;
  if (ts.isPropertyAccessExpression(parent) && parent.name === node) return false;
  if ((ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent)) && parent.name === node) return false;
  if ((ts.isMethodDeclaration(parent) || ts.isGetAccessor(parent) || ts.isSetAccessor(parent)) && parent.name === node)
    return false;
  if (ts.isBindingElement(parent) && parent.propertyName === node) return false;
  if (ts.isVariableDeclaration(parent) || ts.isParameter(parent) || ts.isFunctionDeclaration(parent)) return false;
  if (ts.isLabeledStatement(parent) || ts.isBreakOrContinueStatement(parent)) return false;
  return true;
}

/** Is `node` (a reference to `name`) protected by a `typeof name` test or a `try`? */
function isGuarded(node: ts.Node, name = node.getText()): boolean {
  const tests = (n: ts.Node) => new RegExp(`typeof\\s*\\(?\\s*${name.replace(/\./g, "\\.")}\\b`).test(n.getText());
  if (ts.isTypeOfExpression(node.parent)) return true;
  for (let child = node, parent = node.parent; parent; child = parent, parent = parent.parent) {
    if (ts.isBinaryExpression(parent) && parent.right === child) {
      const op = parent.operatorToken.kind;
      if ((op === ts.SyntaxKind.BarBarToken || op === ts.SyntaxKind.AmpersandAmpersandToken) && tests(parent.left))
        return true;
    }
    if (ts.isConditionalExpression(parent) && parent.condition !== child && tests(parent.condition)) return true;
    if (ts.isIfStatement(parent) && parent.expression !== child && tests(parent.expression)) return true;
    if (ts.isTryStatement(parent) && parent.tryBlock === child) return true;
    if (ts.isFunctionLike(parent)) return false;
  }
  return false;
}

describe("@sbx/web bundled for a browser", () => {
  for (const entry of ["./src/index.ts", "./src/effect.ts"]) {
    it(`${entry} imports no Node builtin and uses no Node global`, async () => {
      const { text, builtinImports } = await bundle(`export * from ${JSON.stringify(entry)};`);
      expect(builtinImports).toEqual([]);
      expect(browserProblems(text)).toEqual([]);
      // The bundle is really the client (not an empty tree-shaken file).
      expect(text.length).toBeGreaterThan(50_000);
    });
  }

  it("a bundle that uses the client keeps the Connect protocol and raw HTTP over fetch, without protobuf-es", async () => {
    const { text, builtinImports, packages } = await bundle(
      `import { SandboxClient } from "./src/index.ts"; globalThis.client = new SandboxClient({ token: "t" });`,
    );
    expect(builtinImports).toEqual([]);
    expect(browserProblems(text)).toEqual([]);
    // Asserted as booleans: a failure must not print a 400 kB bundle.
    expect(text.includes("/sbx.v1/output/"), "the raw output route").toBe(true);
    expect(/connect-protocol-version/i.test(text), "the Connect protocol").toBe(true);
    expect(text.includes("globalThis.fetch"), "fetch").toBe(true);
    // Connect's client and protobuf-es cost more than the rest of the SDK: a page that only
    // uses SandboxClient must not carry them (Effect is the only npm package in it).
    expect([...packages].sort()).toEqual(["effect"]);
  });

  it("createWebTransport brings connect-web and protobuf-es only to the bundles that use it", async () => {
    const { packages } = await bundle(
      `import { createWebTransport } from "./src/index.ts"; globalThis.transport = createWebTransport("http://x");`,
    );
    expect(packages.has("@connectrpc/connect-web")).toBe(true);
    expect(packages.has("@bufbuild/protobuf")).toBe(true);
  });
});

describe("the browser check catches Node-only code", () => {
  it("an import of node:fs (as a module of the client would have it)", async () => {
    const { text, builtinImports } = await bundle(
      `import { readFileSync } from "node:fs"; export * from "./src/index.ts"; export const read = readFileSync;`,
    );
    expect(builtinImports).toEqual([expect.stringMatching(/^node:fs \(import-statement in .*entry\.ts\)$/)]);
    expect(browserProblems(text)).toEqual([expect.stringMatching(/^import of a builtin: /)]);
  });

  it("a builtin without the node: prefix, a dynamic import and a require", async () => {
    const { text, builtinImports } = await bundle(
      `import { join } from "path"; export const j = join; export const f = () => import("node:os"); export const c = () => require("child_process");`,
    );
    expect(builtinImports).toHaveLength(3);
    expect(browserProblems(text)).toEqual([
      expect.stringMatching(/^import of a builtin: /),
      expect.stringMatching(/^import\(\) of a builtin: /),
      expect.stringMatching(/^a require\(\) left in the bundle/), // esbuild's __require("child_process")
    ]);
  });

  it("Node globals used unguarded, and the guards that make them safe", () => {
    expect(browserProblems(`let a=process.env.SBX_TOKEN;`)).toHaveLength(1);
    expect(browserProblems(`let b=Buffer.from(x);`)).toHaveLength(1);
    expect(browserProblems(`let c=require("fs");`)).toHaveLength(2); // a builtin, and `require`
    expect(browserProblems(`let d=globalThis.process.env;`)).toHaveLength(1);
    expect(browserProblems(`function f(){return process.pid}`)).toHaveLength(1);
    expect(browserProblems(`let e=globalThis.process?.getBuiltinModule?.("node:fs");`)).toEqual([]);
    expect(browserProblems(`let e2=load("node:fs");`)).toHaveLength(1);
    expect(browserProblems(`let f=typeof process!="object"||typeof process.env!="object"||process.env.X;`)).toEqual([]);
    expect(browserProblems(`let g=typeof Buffer<"u"?Buffer.from(x):y;`)).toEqual([]);
    expect(browserProblems(`try{process.env.X}catch{}`)).toEqual([]);
    expect(browserProblems(`let h={process:1},i=h.process,k=\`process \${h}\`,l="process";`)).toEqual([]);
  });
});
