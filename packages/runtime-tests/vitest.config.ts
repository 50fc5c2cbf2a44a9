import { defineConfig } from "vitest/config";

// Each file starts one runtime (a browser, deno, bun) that runs the whole conformance suite in
// its beforeAll, so hooks get the suite's whole budget.
export default defineConfig({
  test: { name: "runtimes", include: ["src/**/*.test.ts"], testTimeout: 60_000, hookTimeout: 20 * 60_000 },
});
