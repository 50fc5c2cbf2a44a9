// One import path, the right adapter: @sbx/client resolves by export conditions. Node picks
// @sbx/node; a browser bundle picks @sbx/web and carries no Node adapter. (Deno and Bun are
// checked with their real binaries in packages/runtime-tests.)
import { fileURLToPath } from "node:url";
import * as client from "@sbx/client";
import * as clientEffect from "@sbx/client/effect";
import * as node from "@sbx/node";
import * as nodeEffect from "@sbx/node/effect";
import { build } from "esbuild";
import { describe, expect, it } from "vitest";

describe("@sbx/client export conditions", () => {
  it("resolves to @sbx/node in Node, with the Node types (local files)", async () => {
    expect(client.SandboxClient).toBe(node.SandboxClient);
    expect(clientEffect.layer).toBe(nodeEffect.layer);
    const typed: node.Sandbox | undefined = undefined as client.Sandbox | undefined;
    if (typed) await typed.filesystem.copyFromLocal("/a", "/b");
  });

  for (const platform of ["browser", "neutral"] as const) {
    it(`bundles @sbx/web for the ${platform} platform, and nothing of @sbx/node`, async () => {
      const result = await build({
        stdin: {
          contents: 'export { SandboxClient } from "@sbx/client"; export { layer } from "@sbx/client/effect";',
          resolveDir: fileURLToPath(new URL(".", import.meta.url)),
        },
        bundle: true,
        write: false,
        format: "esm",
        platform,
        ...(platform === "neutral" ? { mainFields: ["module", "main"] } : {}),
        metafile: true,
        logLevel: "silent",
      });
      const inputs = Object.keys(result.metafile.inputs);
      expect(inputs.some((path) => /(^|\/)(packages\/web|@sbx\/web)\/dist\//.test(path))).toBe(true);
      expect(inputs.filter((path) => /(^|\/)(packages\/node|@sbx\/node)\/dist\//.test(path))).toEqual([]);
      expect(inputs.filter((path) => path.includes("connect-node"))).toEqual([]);
    });
  }
});
