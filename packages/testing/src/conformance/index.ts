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
import { imageCases } from "./cases/images.js";
import { networkCases } from "./cases/network.js";
import { protocolCases } from "./cases/protocol.js";
import { rawRouteCases } from "./cases/raw-routes.js";
import { sandboxCases } from "./cases/sandboxes.js";
import { signalCases } from "./cases/signals.js";
import { streamCases } from "./cases/streams.js";
import { tunnelDomainCases } from "./cases/tunnel-domain.js";
import { validationCases } from "./cases/validation.js";
import { expectKnownDifferences } from "./known-differences.js";
import type {
  ConformanceTarget,
  FakeControls,
  Harness,
  SandboxClientLike,
  TestApi,
  TestImageSource,
} from "./target.js";

export * from "./assert.js";
export { type HttpMessage, readHttpMessage, statusLine } from "./http-message.js";
export * from "./interleaved.js";
export {
  caseName,
  FAKE_KNOWN_DIFFERENCES,
  KNOWN_DIFFERENCE_MARK,
  type KnownDifferences,
  SERVER_KNOWN_DIFFERENCES,
} from "./known-differences.js";
export { type CaseResult, listCases, type RunOptions, runConformance } from "./runner.js";
export type {
  ConformanceTarget,
  FakeControls,
  Harness,
  SandboxClientLike,
  SdkModule,
  TestApi,
  TestImage,
  TestImageSource,
} from "./target.js";
export type {
  TestAppName,
  TunnelDomainServer,
  TunnelDomainServerOptions,
  TunnelDomainServers,
  WireAnswer,
  WireClient,
  WireConnection,
  WireHttp2Session,
  WireRequest,
  WireStream,
  WireWebSocket,
} from "./tunnel-domain-target.js";

/** Test images from the fake's registry: a repository of its own per image, on a registry name no DNS knows. */
export const fakeImageSource = (fake: Pick<FakeControls, "images">): TestImageSource => ({
  async publish(name, image) {
    const reference = `registry.sbx.test/conformance/${name}-${Math.random().toString(36).slice(2, 10)}:1`;
    await fake.images.add(reference, image);
    return reference;
  },
});

/**
 * Registers the suite for `target`. Where a target differs is said only in its
 * `knownDifferences` (cases listed there are expected to fail); cases never branch on the
 * target. Capabilities gate whole groups: `fake` (fault injection), `endpoint` (HTTP spoken
 * directly: raw routes, wire-level checks), `tunnelDomain` (servers with a tunnel domain). With
 * `sandboxImage`, every sandbox the cases create starts from that image, but where a case names
 * an image of its own (or the default one).
 */
export function defineConformanceSuite(api: TestApi, target: ConformanceTarget): void {
  const t = expectKnownDifferences(api, target.knownDifferences ?? {}, target.name);
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
    createOptions(options = {}) {
      return { app, ...(target.sandboxImage ? { image: target.sandboxImage() } : {}), ...options };
    },
    async sandbox(options = {}) {
      const sb = await harness.client().sandboxes.create(harness.createOptions(options));
      created.push(sb);
      return sb;
    },
    images: target.images ?? (target.fake ? fakeImageSource(target.fake) : undefined),
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
    signalCases(t, harness);
    imageCases(t, harness);
    networkCases(t, harness);
    // Capabilities, not differences: these groups need something only some targets have.
    if (target.endpoint) protocolCases(t, harness, target.endpoint);
    if (target.endpoint) rawRouteCases(t, harness, target.endpoint);
    if (target.fake) faultCases(t, harness, target.fake);
    if (target.tunnelDomain) tunnelDomainCases(t, harness, target.tunnelDomain);
  });
}
