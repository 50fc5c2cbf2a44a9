/** What a conformance run needs to know about its target. */
import type * as core from "@sbx/core";
import type { FakeImageOptions, FakeRegisteredImage } from "../fake/fake-images.js";
import type { FailNextOptions, FaultMethod } from "../fake/faults.js";
import type { TunnelDomainServers } from "./tunnel-domain-target.js";

/** Stable case name → why the target differs there (see known-differences.ts). */
export type KnownDifferences = Readonly<Record<string, string>>;

/** A vitest/jest/node:test-like API; the suite registers its cases through it. */
export interface TestApi {
  describe(name: string, fn: () => void): void;
  it(name: string, fn: () => Promise<void> | void, timeoutMs?: number): void;
  beforeAll(fn: () => unknown): void;
  afterAll(fn: () => unknown): void;
}

/**
 * The adapter module under test (e.g. `import * as sdk from "@sbx/node"`): core's exports, with
 * the adapter's own `SandboxClient` and `Sandbox` (typed for its runtime) in place of core's.
 */
export type SdkModule = Omit<typeof core, "SandboxClient" | "Sandbox"> & {
  readonly SandboxClient: new (options?: core.SandboxClientOptions) => core.SandboxClient<core.Sandbox>;
  readonly Sandbox: abstract new (...args: never[]) => core.Sandbox;
};
export type SandboxClientLike = core.SandboxClient;

/** The fake server's controls the fault cases use (present when the target is the fake). */
export interface FakeControls {
  failNext(method: FaultMethod, options: FailNextOptions): void;
  cutStreams(options: { afterBytes: number | (() => number); times?: number }): void;
  clearFaults(): void;
  onExec(
    pattern: RegExp | string,
    handler: (ctx: {
      stdout: { write(data: string | Uint8Array): void };
      stderr: { write(data: string | Uint8Array): void };
      sleep(ms: number): Promise<void>;
    }) => unknown,
  ): void;
  /** Scripts what answers HTTP on a port inside every sandbox (the network cases' apps). */
  onPort(
    port: number,
    handler: (request: Request, context: { sandboxId: string; port: number }) => Response | Promise<Response>,
  ): void;
  /** Scripts what answers TCP connections on a port inside every sandbox, as web byte streams. */
  onPortConnection(
    port: number,
    handler: (
      connection: { readable: ReadableStream<Uint8Array>; writable: WritableStream<Uint8Array> },
      context: { sandboxId: string; port: number },
    ) => void | Promise<void>,
  ): void;
  readonly calls: readonly { method: string }[];
  /** The fake's registry: where the image cases put their test images when the target is the fake. */
  readonly images: { add(reference: string, options?: FakeImageOptions): Promise<FakeRegisteredImage> };
}

/** A test image the image cases need: what its config says, the files it holds, who may pull it. */
export interface TestImage {
  readonly env?: Readonly<Record<string, string>>;
  readonly workingDir?: string;
  readonly user?: string;
  /** Text files by absolute path. */
  readonly files?: Readonly<Record<string, string>>;
  /** The registry wants these credentials for it (a private repository). */
  readonly credentials?: { readonly username: string; readonly password: string };
}

/**
 * A capability, not a difference: how the image cases get a test image where the target can
 * pull it (a registry the target reaches). The fake's comes from its registry (`fake.images`).
 */
export interface TestImageSource {
  /**
   * Puts an image named `name` (a fresh repository each call) where the target can pull it;
   * resolves with its reference ("host:port/repo:tag").
   */
  publish(name: string, image: TestImage): Promise<string>;
}

export interface ConformanceTarget {
  readonly name: string;
  readonly sdk: SdkModule;
  /** A fresh client connected to the target. */
  makeClient(): Promise<SandboxClientLike> | SandboxClientLike;
  /**
   * A capability, not a difference: the fake server's controls, which the fault-injection
   * cases need (they run only when present).
   */
  readonly fake?: FakeControls;
  /**
   * A capability, not a difference: where the target serves HTTP, when it does (called inside
   * cases, so a listener started in a beforeAll is fine). The cases that speak HTTP themselves
   * (the raw routes, wire-level checks the SDK's own validation would stop) run only when present.
   */
  readonly endpoint?: () => { readonly url: string; readonly token: string };
  /**
   * A capability, not a difference: where test images come from (see TestImageSource). When
   * absent, the fake's registry serves when `fake` is given; with neither, the cases that need
   * a test image do not run.
   */
  readonly images?: TestImageSource;
  /**
   * What every sandbox of the run starts from unless a case names its own image: an image id
   * or reference the target can start sandboxes from (called at each create, so an image
   * pulled in a beforeAll is fine). Absent: the target's default image. Running the suite with
   * one checks that no case depends on what the default image holds.
   */
  readonly sandboxImage?: () => string;
  /**
   * A capability, not a difference: servers of this target's kind started with a tunnel domain
   * (sandbox ports by host name on the API's port), and HTTP on the wire to them; the tunnel
   * domain cases run only when present. They start servers of their own and do not use the
   * target's client, so one target per kind of server (and runtime) is enough to give it.
   */
  readonly tunnelDomain?: TunnelDomainServers;
  /**
   * The cases this target is known to fail, by stable name, with the reason (see
   * known-differences.ts: FAKE_KNOWN_DIFFERENCES for the fake). They run and are expected to fail.
   */
  readonly knownDifferences?: KnownDifferences;
}

/** Shared per-run helpers for the cases. */
export interface Harness {
  readonly target: ConformanceTarget;
  readonly sdk: SdkModule;
  /** A unique app name for this run, so parallel runs against one server never collide. */
  readonly app: string;
  client(): SandboxClientLike;
  /**
   * A create's options: this run's app and the target's `sandboxImage`, then `options` (an
   * `image` there wins; `image: undefined` asks for the target's default image).
   */
  createOptions(options?: core.CreateSandboxOptions): core.CreateSandboxOptions;
  /** Creates a sandbox (with `createOptions`) and terminates it when the run ends. */
  sandbox(options?: core.CreateSandboxOptions): Promise<core.Sandbox>;
  /** Where test images come from, when the target can have them (see ConformanceTarget.images). */
  readonly images: TestImageSource | undefined;
}
