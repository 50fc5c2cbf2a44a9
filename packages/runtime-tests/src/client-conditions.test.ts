// One import path, the right adapter: `@sbx/client` resolves by package export conditions to
// @sbx/deno in the real deno binary and to @sbx/bun in the real bun binary.
import { describe, expect, it } from "vitest";
import { bunBinary, runBun } from "./bun-support.js";
import { denoBinary, runDeno } from "./deno-support.js";

const last = (stdout: string) => JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}");

describe("@sbx/client export conditions", () => {
  const deno = denoBinary();
  it.skipIf(!deno)("resolves to @sbx/deno in Deno", async () => {
    const { stdout } = await runDeno(deno as string, [
      "run",
      "--node-modules-dir=manual",
      "src/client-conditions-entry.ts",
    ]);
    expect(last(stdout)).toEqual({ runtime: "deno", sameClient: true, sameLayer: true, isAdapterClient: true });
  });

  const bun = bunBinary();
  it.skipIf(!bun)("resolves to @sbx/bun in Bun", async () => {
    const { stdout } = await runBun(bun as string, ["run", "src/client-conditions-entry.ts"]);
    expect(last(stdout)).toEqual({ runtime: "bun", sameClient: true, sameLayer: true, isAdapterClient: true });
  });
});
