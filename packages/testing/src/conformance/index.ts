/**
 * The sbx conformance suite: one suite, written only against the public API, that every
 * target passes — the fake, the real server, and every runtime adapter. Register it with
 * your test runner:
 *
 * ```ts
 * import { describe, it, beforeAll, afterAll } from "vitest";
 * import * as sdk from "@sbx/node";
 * defineConformanceSuite({ describe, it, beforeAll, afterAll }, { name: "node", sdk, makeClient: () => new sdk.SandboxClient() });
 * ```
 */
import type { Sandbox } from "@sbx/core";
import { commandCases } from "./cases/commands.js";
import { execCases } from "./cases/exec.js";
import { faultCases } from "./cases/faults.js";
import { filesystemCases } from "./cases/filesystem.js";
import { sandboxCases } from "./cases/sandboxes.js";
import { streamCases } from "./cases/streams.js";
import { validationCases } from "./cases/validation.js";
import type { ConformanceTarget, Harness, SandboxClientLike, TestApi } from "./target.js";

export * from "./assert.js";
export * from "./interleaved.js";
export { type CaseResult, listCases, type RunOptions, runConformance } from "./runner.js";
export type { ConformanceTarget, FakeControls, Harness, SandboxClientLike, SdkModule, TestApi } from "./target.js";

export function defineConformanceSuite(t: TestApi, target: ConformanceTarget): void {
  const app = `conformance-${Math.random().toString(36).slice(2, 10)}`;
  let client: SandboxClientLike | undefined;
  const created: Sandbox[] = [];
  const harness: Harness = {
    target,
    sdk: target.sdk,
    app,
    client() {
      if (!client) throw new Error("the conformance client is not ready (beforeAll has not run)");
      return client;
    },
    async sandbox(options = {}) {
      const sb = await harness.client().sandboxes.create({ app, ...options });
      created.push(sb);
      return sb;
    },
  };

  t.describe(`sbx conformance: ${target.name}`, () => {
    t.beforeAll(async () => {
      client = await target.makeClient();
    });
    t.afterAll(async () => {
      await Promise.allSettled(created.map((sb) => sb.terminate()));
      await client?.close();
    });
    sandboxCases(t, harness);
    execCases(t, harness);
    commandCases(t, harness);
    streamCases(t, harness);
    validationCases(t, harness);
    filesystemCases(t, harness);
    if (target.fake) faultCases(t, harness, target.fake);
  });
}
