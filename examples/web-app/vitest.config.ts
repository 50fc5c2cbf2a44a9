import { defineConfig } from "vitest/config";

// The browser test starts a real sbx server and Chromium in its hooks.
export default defineConfig({
  test: { name: "example-web-app", include: ["src/**/*.test.ts"], testTimeout: 90_000, hookTimeout: 120_000 },
});
