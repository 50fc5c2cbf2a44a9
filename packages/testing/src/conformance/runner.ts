/**
 * A small test runner for runtimes without a vitest-like API at hand (a browser page, a web
 * worker, Deno, Bun): it implements `TestApi`, runs what was registered one case at a time,
 * and returns one result per case, which the caller reports however its runtime can (e.g.
 * printed as JSON lines and turned back into vitest tests by the Node side).
 *
 * ```ts
 * const results = await runConformance((t) => defineConformanceSuite(t, target), {
 *   onResult: (r) => console.log(JSON.stringify(r)),
 * });
 * ```
 */
import type { TestApi } from "./target.js";

export interface CaseResult {
  /** Suite names and the case name, joined with " > " (vitest's full name). */
  readonly name: string;
  readonly ok: boolean;
  readonly durationMs: number;
  /** The failure's message and stack when `ok` is false. */
  readonly error?: string;
}

export interface RunOptions {
  /** Runs only cases whose full name matches. */
  readonly filter?: RegExp;
  /** A case's deadline when it set none. Default 60 s. */
  readonly defaultTimeoutMs?: number;
  /** Deadline of each beforeAll / afterAll hook. Default 60 s. */
  readonly hookTimeoutMs?: number;
  /** Called as each case finishes. */
  readonly onResult?: (result: CaseResult) => void;
}

interface Case {
  readonly name: string;
  readonly fn: () => Promise<void> | void;
  readonly timeoutMs: number | undefined;
}

interface Suite {
  readonly name: string;
  readonly children: (Suite | Case)[];
  readonly beforeAll: (() => unknown)[];
  readonly afterAll: (() => unknown)[];
}

const isSuite = (node: Suite | Case): node is Suite => "children" in node;

/**
 * The full names of the cases `register` defines, in order, without running anything: lets
 * the side that starts a runtime declare one test per case before the runtime reports.
 */
export function listCases(register: (t: TestApi) => void, filter?: RegExp): string[] {
  const names: string[] = [];
  const walk = (suite: Suite, path: string) => {
    for (const child of suite.children) {
      const childPath = join(path, child.name);
      if (isSuite(child)) walk(child, childPath);
      else if (!filter || filter.test(childPath)) names.push(childPath);
    }
  };
  walk(collect(register), "");
  return names;
}

function collect(register: (t: TestApi) => void): Suite {
  const root: Suite = { name: "", children: [], beforeAll: [], afterAll: [] };
  let current = root;
  const t: TestApi = {
    describe(name, fn) {
      const suite: Suite = { name, children: [], beforeAll: [], afterAll: [] };
      current.children.push(suite);
      const parent = current;
      current = suite;
      try {
        fn();
      } finally {
        current = parent;
      }
    },
    it(name, fn, timeoutMs) {
      current.children.push({ name, fn, timeoutMs });
    },
    beforeAll(fn) {
      current.beforeAll.push(fn);
    },
    afterAll(fn) {
      current.afterAll.push(fn);
    },
  };
  register(t);
  return root;
}

/** Registers cases through the `TestApi` given to `register`, then runs them in order. */
export async function runConformance(register: (t: TestApi) => void, options: RunOptions = {}): Promise<CaseResult[]> {
  const root = collect(register);
  const results: CaseResult[] = [];
  const report = (result: CaseResult) => {
    results.push(result);
    options.onResult?.(result);
  };
  const hookTimeoutMs = options.hookTimeoutMs ?? 60_000;
  const wanted = (path: string) => !options.filter || options.filter.test(path);
  const hasWanted = (suite: Suite, path: string): boolean =>
    suite.children.some((child) => {
      const childPath = join(path, child.name);
      return isSuite(child) ? hasWanted(child, childPath) : wanted(childPath);
    });

  const run = async (suite: Suite, path: string): Promise<void> => {
    if (!hasWanted(suite, path)) return;
    let setupError: unknown;
    for (const hook of suite.beforeAll) {
      try {
        await withTimeout(async () => void (await hook()), hookTimeoutMs, "beforeAll hook");
      } catch (error) {
        setupError = error;
        break;
      }
    }
    for (const child of suite.children) {
      const childPath = join(path, child.name);
      if (isSuite(child)) {
        if (setupError === undefined) await run(child, childPath);
        else failAll(child, childPath, setupError);
        continue;
      }
      if (!wanted(childPath)) continue;
      if (setupError !== undefined) {
        report({ name: childPath, ok: false, durationMs: 0, error: `beforeAll failed: ${describe(setupError)}` });
        continue;
      }
      const started = now();
      try {
        await withTimeout(child.fn, child.timeoutMs ?? options.defaultTimeoutMs ?? 60_000, `case "${child.name}"`);
        report({ name: childPath, ok: true, durationMs: now() - started });
      } catch (error) {
        report({ name: childPath, ok: false, durationMs: now() - started, error: describe(error) });
      }
    }
    for (const hook of suite.afterAll) {
      try {
        await withTimeout(async () => void (await hook()), hookTimeoutMs, "afterAll hook");
      } catch (error) {
        report({ name: join(path, "afterAll"), ok: false, durationMs: 0, error: describe(error) });
      }
    }
  };

  const failAll = (suite: Suite, path: string, error: unknown) => {
    for (const child of suite.children) {
      const childPath = join(path, child.name);
      if (isSuite(child)) failAll(child, childPath, error);
      else if (wanted(childPath))
        report({ name: childPath, ok: false, durationMs: 0, error: `beforeAll failed: ${describe(error)}` });
    }
  };

  await run(root, "");
  return results;
}

const join = (path: string, name: string) => (path ? `${path} > ${name}` : name);
const now = () => globalThis.performance?.now() ?? Date.now();

function describe(error: unknown): string {
  if (error instanceof Error)
    return error.stack?.includes(error.message) ? error.stack : `${error.message}\n${error.stack ?? ""}`;
  return String(error);
}

async function withTimeout(fn: () => Promise<void> | void, ms: number, what: string): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      Promise.resolve().then(fn),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
