import { defineConfig } from "vitest/config";

export default defineConfig({
  test: { name: "example-testing-with-fake", include: ["src/**/*.test.ts"] },
});
