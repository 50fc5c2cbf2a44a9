/**
 * Sandbox operations as Effects over `SbxConnection`: the Effect API, and what the Promise API's
 * `Sandbox` and `SandboxClient` run.
 */
import {
  canonicalCidrAllowlist,
  networkPolicyProblem,
  type Probe as ProbeSpec,
  portsProblem,
  type Sandbox as SandboxInfo,
  type SandboxSpec,
} from "@sbx/proto";
import { SandboxState } from "@sbx/proto/wire";
import * as Effect from "effect/Effect";
import * as Option from "effect/Option";
import * as Stream from "effect/Stream";
import { InvalidError, type SandboxError } from "./errors.js";
import { randomId } from "./ids.js";
import type { Image } from "./image-ops.js";
import { loadOnFirstUse } from "./load-on-first-use.js";
import { longPoll, longPollSettings } from "./long-poll.js";
import type { Probe } from "./probe.js";
import { call, type SbxConnection } from "./rpc.js";
import {
  MAX_SANDBOX_TIMEOUT_MS,
  validateAbsolutePath,
  validateArgv,
  validateDuration,
  validated,
  validateEnv,
  validateName,
  validatePositiveInteger,
  validateResource,
  validateTags,
} from "./validation.js";

export type { SandboxInfo };

export interface CreateSandboxOptions {
  /** Entrypoint argv; by default the sandbox stays alive until terminated. */
  readonly command?: string[];
  /** Grouping namespace, default "default"; names are unique among an app's running sandboxes. */
  readonly app?: string;
  /** A name unique among the app's running sandboxes, for `sandboxes.fromName`. */
  readonly name?: string;
  /** Key/value labels, for `sandboxes.list({ tags })`; change them later with `setTags`. */
  readonly tags?: Record<string, string>;
  /**
   * What the sandbox starts from: an image (as `client.images` gives it), an image id
   * ("im-…"), or a registry reference ("python:3.12-slim", "host:5000/app@sha256:…"), pulled
   * first when the server does not have it yet (credentials for a private registry: pull it
   * with `client.images.fromRegistry` first). The image's `Env`, `WorkingDir` and `User` apply
   * to every process unless `env` / `workdir` say otherwise. Default: the server's default
   * image. A malformed reference is an `InvalidError` before any request.
   */
  readonly image?: string | Image;
  /**
   * Capacity of the writable layer in MiB; writes past it fail with ENOSPC inside the sandbox.
   * A whole number (`sbx server` takes 16 MiB to 1 TiB); default: the server's default (10 GiB).
   */
  readonly diskMiB?: number;
  /** Environment variables of the entrypoint and of every process started in the sandbox. */
  readonly env?: Record<string, string>;
  /** Absolute working directory of the entrypoint and of `exec` by default. */
  readonly workdir?: string;
  /** Maximum lifetime, default 300 000 (5 minutes). The sandbox then ends with return code 124. */
  readonly timeoutMs?: number;
  /**
   * Stop the sandbox once it has been idle this long: no RPCs on it and no running commands
   * (waiting on it does not count). It then ends with return code 124 and
   * `SandboxIdleTimeoutError`. Default: no idle timeout.
   */
  readonly idleTimeoutMs?: number;
  /** CPU cores: a number is the limit; of `{ request, limit }` the sbx server enforces the limit only. */
  readonly cpu?: number | { request: number; limit: number };
  /** Memory in MiB (default 1024): a number is the limit; of `{ request, limit }` the sbx server enforces the limit only. */
  readonly memoryMiB?: number | { request: number; limit: number };
  /**
   * Cut the sandbox off the network: it reaches nothing outside itself. Its `ports` stay
   * reachable through the server (unlike Modal, `ports` with `blockNetwork` is allowed).
   * Today sandboxes on the sbx server have no network at all but loopback, whatever this
   * says; the fake keeps the policy as data. Change it later with `sb.update`.
   */
  readonly blockNetwork?: boolean;
  /**
   * The only destinations the sandbox may reach: IPv4 or IPv6 CIDRs ("10.0.0.0/8",
   * "2001:db8::/32") or single addresses. Checked before any request (`InvalidError`): host
   * bits past the prefix ("10.1.2.3/8") and zone ids are refused, an empty list too (leave it
   * out to allow every destination, or set `blockNetwork` to allow none), and so is a list
   * with `blockNetwork: true`. The fake takes it; the sbx server rejects it with
   * `UnsupportedError` until its per-sandbox network lands.
   */
  readonly cidrAllowlist?: string[];
  /**
   * Ports inside the sandbox to expose through tunnels (`sb.tunnels()`): whole numbers from 1
   * to 65535, each once (`InvalidError` otherwise), at most 64. The fake takes them; the sbx
   * server rejects them with `UnsupportedError` until tunnels land.
   */
  readonly ports?: number[];
  /**
   * What `waitUntilReady` (and `tunnels`) wait for: `Probe.exec(argv)` (a command exiting 0,
   * through the same path as `exec`: works on the sbx server and the fake) or
   * `Probe.tcp(port)` (a port accepting connections: the fake's port registry; the sbx server
   * rejects it with `UnsupportedError` until its per-sandbox network lands).
   */
  readonly readinessProbe?: Probe;
  /** Run the entrypoint under a pseudo-terminal (its stdout and stderr become one stream). */
  readonly pty?: boolean;
}

export interface ListSandboxesOptions {
  /** Only sandboxes of this app (default: every app). */
  readonly app?: string;
  /** Only sandboxes carrying all of these tags. */
  readonly tags?: Record<string, string>;
  /** Also list sandboxes that have finished (default: running ones only). */
  readonly includeFinished?: boolean;
}

export const DEFAULT_APP = "default";

/**
 * Validates create options and builds the wire spec; throws `InvalidError` on bad input. The
 * image is left to `createSandbox`, which loads the image checks only when one is named.
 */
export function sandboxSpecOf(options: CreateSandboxOptions): SandboxSpec {
  if (typeof options !== "object" || options === null) throw new InvalidError("create options must be an object");
  const spec: SandboxSpec = {
    $typeName: "sbx.v1.SandboxSpec",
    command: [],
    app: options.app === undefined ? DEFAULT_APP : validateName(options.app, "app"),
    name: "",
    tags: {},
    image: "",
    env: {},
    workdir: "",
    timeoutMs: 0n,
    idleTimeoutMs: 0n,
    blockNetwork: false,
    cidrAllowlist: [],
    ports: [],
    pty: false,
    diskMib: 0,
  };
  if (options.command !== undefined) spec.command = validateArgv(options.command, "command");
  if (options.name !== undefined) spec.name = validateName(options.name);
  if (options.tags !== undefined) spec.tags = validateTags(options.tags);
  if (options.diskMiB !== undefined) spec.diskMib = validatePositiveInteger(options.diskMiB, "diskMiB");
  if (options.env !== undefined) spec.env = validateEnv(options.env);
  if (options.workdir !== undefined) spec.workdir = validateAbsolutePath(options.workdir, "workdir");
  if (options.timeoutMs !== undefined) {
    const ms = validateDuration(options.timeoutMs, "timeoutMs", MAX_SANDBOX_TIMEOUT_MS);
    if (ms === 0) throw new InvalidError("timeoutMs must be positive");
    spec.timeoutMs = BigInt(ms);
  }
  if (options.idleTimeoutMs !== undefined) {
    spec.idleTimeoutMs = BigInt(validateDuration(options.idleTimeoutMs, "idleTimeoutMs", MAX_SANDBOX_TIMEOUT_MS));
  }
  if (options.cpu !== undefined)
    spec.cpu = {
      $typeName: "sbx.v1.CpuSpec",
      cores: { $typeName: "sbx.v1.ResourceAmount", ...validateResource(options.cpu, "cpu") },
    };
  if (options.memoryMiB !== undefined) {
    spec.memory = {
      $typeName: "sbx.v1.MemorySpec",
      mib: { $typeName: "sbx.v1.ResourceAmount", ...validateResource(options.memoryMiB, "memoryMiB") },
    };
  }
  if (options.blockNetwork !== undefined) spec.blockNetwork = Boolean(options.blockNetwork);
  if (options.cidrAllowlist !== undefined) spec.cidrAllowlist = validateCidrAllowlist(options.cidrAllowlist);
  problem(networkPolicyProblem(spec.blockNetwork, spec.cidrAllowlist));
  if (options.ports !== undefined) spec.ports = validatePorts(options.ports);
  if (options.readinessProbe !== undefined) spec.readinessProbe = probeSpecOf(options.readinessProbe);
  if (options.pty !== undefined) spec.pty = Boolean(options.pty);
  return spec;
}

const problem = (text: string | undefined) => {
  if (text) throw new InvalidError(text);
};

/** An allowlist as the wire takes it: canonical CIDRs, never empty (see `cidrAllowlist`). */
function validateCidrAllowlist(cidrs: unknown): string[] {
  if (!Array.isArray(cidrs) || cidrs.some((c) => typeof c !== "string")) {
    throw new InvalidError("cidrAllowlist must be an array of CIDR strings");
  }
  if (cidrs.length === 0) {
    throw new InvalidError(
      "cidrAllowlist is empty: leave it out to allow every destination, or set blockNetwork: true to allow none",
    );
  }
  const canonical = canonicalCidrAllowlist(cidrs);
  if ("problem" in canonical) throw new InvalidError(canonical.problem);
  return canonical;
}

function validatePorts(ports: unknown): number[] {
  if (!Array.isArray(ports)) throw new InvalidError("ports must be an array of port numbers (1-65535)");
  problem(portsProblem(ports));
  return [...ports];
}

function probeSpecOf(probe: Probe): ProbeSpec {
  if (typeof probe !== "object" || probe === null || (probe.kind !== "tcp" && probe.kind !== "exec")) {
    throw new InvalidError("readinessProbe must be a Probe (Probe.tcp or Probe.exec)");
  }
  return {
    $typeName: "sbx.v1.Probe",
    intervalMs: probe.intervalMs,
    kind:
      probe.kind === "tcp"
        ? { case: "tcpPort", value: probe.port ?? 0 }
        : { case: "exec", value: { $typeName: "sbx.v1.ExecProbe", argv: [...(probe.argv ?? [])] } },
  };
}

const sandboxOf = (response: { sandbox?: SandboxInfo | undefined }): SandboxInfo => {
  if (!response.sandbox) throw new Error("server response is missing the sandbox");
  return response.sandbox;
};

export const createSandbox = (
  options: CreateSandboxOptions = {},
): Effect.Effect<SandboxInfo, SandboxError, SbxConnection> =>
  Effect.gen(function* () {
    const spec = yield* validated(() => sandboxSpecOf(options));
    let settings = {};
    if (options.image !== undefined) {
      // The image checks (the reference grammar) load only when a create names an image.
      const checks = yield* Effect.tryPromise({
        try: () => loadOnFirstUse(() => import("./image-checks.js")),
        catch: (error) => error as SandboxError,
      });
      const image = yield* validated(() => checks.createImage(options.image));
      spec.image = image.name;
      settings = image.settings;
    }
    // One idempotency key for every attempt: a retried create never makes a second sandbox.
    const requestId = randomId("req-");
    const response = yield* call(
      "create sandbox",
      (rpc, o) => rpc.sandboxes.createSandbox({ requestId, spec }, o),
      settings,
    );
    return sandboxOf(response);
  });

export const getSandbox = (sandboxId: string): Effect.Effect<SandboxInfo, SandboxError, SbxConnection> =>
  Effect.gen(function* () {
    yield* validated(() => validateId(sandboxId, "sandbox id"));
    const response = yield* call(`get sandbox ${sandboxId}`, (rpc, o) => rpc.sandboxes.getSandbox({ sandboxId }, o));
    return sandboxOf(response);
  });

export const lookupSandbox = (
  name: string,
  app = DEFAULT_APP,
): Effect.Effect<SandboxInfo, SandboxError, SbxConnection> =>
  Effect.gen(function* () {
    yield* validated(() => {
      validateName(name);
      validateName(app, "app");
    });
    const response = yield* call(`look up sandbox ${JSON.stringify(name)} in app ${JSON.stringify(app)}`, (rpc, o) =>
      rpc.sandboxes.lookupSandbox({ app, name }, o),
    );
    return sandboxOf(response);
  });

/** Every matching sandbox, newest first, fetched page by page as the stream is consumed. */
export const listSandboxes = (
  options: ListSandboxesOptions = {},
): Stream.Stream<SandboxInfo, SandboxError, SbxConnection> =>
  Stream.unwrap(
    Effect.gen(function* () {
      const app = options.app === undefined ? "" : yield* validated(() => validateName(options.app, "app"));
      const tags = options.tags === undefined ? {} : yield* validated(() => validateTags(options.tags));
      const includeFinished = Boolean(options.includeFinished);
      return Stream.paginate("", (cursor: string) =>
        call("list sandboxes", (rpc, o) =>
          rpc.sandboxes.listSandboxes({ app, tags, includeFinished, cursor, pageSize: 100 }, o),
        ).pipe(
          Effect.map(
            (page) => [page.sandboxes, page.nextCursor ? Option.some(page.nextCursor) : Option.none()] as const,
          ),
        ),
      );
    }),
  );

export const waitSandbox = (
  sandboxId: string,
  timeoutMs?: number,
): Effect.Effect<SandboxInfo, SandboxError, SbxConnection> =>
  longPoll(
    `waiting for sandbox ${sandboxId}`,
    (holdMs) =>
      call(
        `wait for sandbox ${sandboxId}`,
        (rpc, o) => rpc.sandboxes.waitSandbox({ sandboxId, timeoutMs: holdMs }, o),
        longPollSettings(holdMs),
      ).pipe(Effect.map((r) => ({ done: r.done, sandbox: sandboxOf(r) }))),
    timeoutMs,
  ).pipe(Effect.map((r) => r.sandbox));

export const terminateSandbox = (sandboxId: string): Effect.Effect<SandboxInfo, SandboxError, SbxConnection> =>
  call(`terminate sandbox ${sandboxId}`, (rpc, o) => rpc.sandboxes.terminateSandbox({ sandboxId }, o)).pipe(
    Effect.map(sandboxOf),
  );

export const setSandboxTags = (
  sandboxId: string,
  tags: Record<string, string>,
): Effect.Effect<SandboxInfo, SandboxError, SbxConnection> =>
  Effect.gen(function* () {
    const checked = yield* validated(() => validateTags(tags));
    const response = yield* call(`set tags of sandbox ${sandboxId}`, (rpc, o) =>
      rpc.sandboxes.setTags({ sandboxId, tags: checked }, o),
    );
    return sandboxOf(response);
  });

export interface UpdateSandboxOptions {
  /**
   * The new outbound policy, replacing the old one whole: `{ blockNetwork: true }` cuts the
   * sandbox off, `{ cidrAllowlist: [...] }` allows only those ranges, `{ blockNetwork: false }`
   * opens it again. The same rules as at create (`InvalidError` before any request). In
   * force, connections it no longer allows cut, when the call resolves. The fake keeps it as
   * data; the sbx server answers `UnsupportedError` until its per-sandbox network lands.
   */
  readonly blockNetwork?: boolean;
  readonly cidrAllowlist?: string[];
}

/** Checks an update and builds its request; throws `InvalidError` on bad input. */
export function updateRequestOf(sandboxId: string, options: UpdateSandboxOptions) {
  if (typeof options !== "object" || options === null) throw new InvalidError("update options must be an object");
  if (options.blockNetwork === undefined && options.cidrAllowlist === undefined) {
    throw new InvalidError("update needs blockNetwork or cidrAllowlist");
  }
  const blockNetwork = Boolean(options.blockNetwork);
  const cidrAllowlist = options.cidrAllowlist === undefined ? [] : validateCidrAllowlist(options.cidrAllowlist);
  problem(networkPolicyProblem(blockNetwork, cidrAllowlist));
  return {
    sandboxId,
    network: { $typeName: "sbx.v1.NetworkPolicy" as const, blockNetwork, cidrAllowlist },
  };
}

export const updateSandbox = (
  sandboxId: string,
  options: UpdateSandboxOptions,
): Effect.Effect<SandboxInfo, SandboxError, SbxConnection> =>
  Effect.gen(function* () {
    const request = yield* validated(() => updateRequestOf(sandboxId, options));
    const response = yield* call(`update sandbox ${sandboxId}`, (rpc, o) => rpc.sandboxes.updateSandbox(request, o));
    return sandboxOf(response);
  });

/**
 * Waits until the sandbox's readiness probe passes (at once for a running sandbox without
 * one); answers whether it did and the sandbox as it then is: one that finished first is
 * answered finished and not ready. Past `timeoutMs`, `TimeoutError`.
 */
export const waitUntilReady = (
  sandboxId: string,
  timeoutMs?: number,
): Effect.Effect<{ readonly ready: boolean; readonly sandbox: SandboxInfo }, SandboxError, SbxConnection> =>
  longPoll(
    `waiting for sandbox ${sandboxId} to be ready`,
    (holdMs) =>
      call(
        `wait until sandbox ${sandboxId} is ready`,
        (rpc, o) => rpc.sandboxes.waitUntilReady({ sandboxId, timeoutMs: holdMs }, o),
        longPollSettings(holdMs),
      ).pipe(
        Effect.map((r) => {
          const sandbox = sandboxOf(r);
          return { done: r.ready || isFinished(sandbox), ready: r.ready, sandbox };
        }),
      ),
    timeoutMs,
  ).pipe(Effect.map(({ ready, sandbox }) => ({ ready, sandbox })));

export const isFinished = (info: SandboxInfo): boolean => info.state === SandboxState.FINISHED;

export function validateId(id: unknown, what: string): string {
  if (typeof id !== "string" || id.length === 0 || id.length > 128 || !/^[A-Za-z0-9._-]+$/.test(id)) {
    throw new InvalidError(`invalid ${what} ${JSON.stringify(id)}`);
  }
  return id;
}
