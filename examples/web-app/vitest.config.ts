import { defineConfig } from "vitest/config";

// The browser test starts a real sbx server and Chromium in its hooks; bench/bundle-size.test.ts
// is the bundle budget (CI fails when @sbx/web's minimal app outgrows 40% of E2B's).
export default defineConfig({
  test: {
    name: "example-web-app",
    include: ["src/**/*.test.ts", "bench/**/*.test.ts"],
    testTimeout: 90_000,
    hookTimeout: 120_000,
  },
});
