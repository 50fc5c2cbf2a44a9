/**
 * SandboxService: create (idempotent by request id), get, lookup by name, list, wait,
 * terminate, tags, update (the network policy), wait until ready.
 */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  DEFAULT_PAGE_SIZE,
  MAX_LONG_POLL_MS,
  MAX_PAGE_SIZE,
  type Sandbox,
  type SandboxService,
  type SandboxSpec,
  SandboxState,
} from "@sbx/proto";
import { checkName, checkNetworkPolicy, checkSandboxSpec, checkTags, invalid } from "../../validation.js";
import type { Engine } from "../engine.js";
import type { EngineSandbox } from "../engine-sandbox.js";
import { terminated } from "../exit-status.js";
import { imageFailure } from "../image-errors.js";
import type { ImageRecord } from "../image-store.js";
import { networkSpecOf } from "../network-spec.js";
import { sandboxOf } from "./lookup.js";

const encodeCursor = (sequence: number) =>
  btoa(`seq:${sequence}`).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
function decodeCursor(cursor: string): number {
  let text = "";
  try {
    text = atob(cursor.replace(/-/g, "+").replace(/_/g, "/"));
  } catch {}
  const match = /^seq:(\d+)$/.exec(text);
  if (!match) throw invalid("invalid list cursor");
  return Number(match[1]);
}

export function sandboxService(engine: Engine): ServiceImpl<typeof SandboxService> {
  /**
   * The image a create names, found or pulled (not cancelled when the caller goes away: a
   * retry of the create joins this one), which the runtime driver must be able to start.
   */
  const imageOf = async (spec: SandboxSpec): Promise<ImageRecord> => {
    const image = await engine.images.resolve(spec.image);
    if (engine.images.isDefault(image)) return image;
    const problem = engine.runtime.imageProblem
      ? await engine.runtime.imageProblem(image)
      : `the ${engine.runtime.name} runtime cannot start sandboxes from images yet, only from its default image (${engine.images.defaultImage.id})`;
    if (problem) throw imageFailure("unsupported", problem, { reference: image.id });
    return image;
  };

  /** Checks what a create may not do now; then records and starts the sandbox. */
  const createNew = async (requestId: string, spec: SandboxSpec): Promise<EngineSandbox> => {
    const networkProblem = engine.runtime.networkProblem?.(networkSpecOf(spec));
    if (networkProblem) throw new ConnectError(networkProblem, Code.Unimplemented);
    const image = await imageOf(spec);
    if (spec.name) {
      for (const other of engine.sandboxes.values()) {
        if (other.running && other.spec.app === spec.app && other.spec.name === spec.name) {
          throw new ConnectError(
            `a running sandbox named ${JSON.stringify(spec.name)} already exists in app ${JSON.stringify(spec.app)}`,
            Code.AlreadyExists,
          );
        }
      }
    }
    const running = [...engine.sandboxes.values()].filter((s) => s.running).length;
    if (running >= engine.maxRunningSandboxes) {
      throw new ConnectError(`at most ${engine.maxRunningSandboxes} sandboxes may run at once`, Code.ResourceExhausted);
    }
    const problem = await engine.options.capacityProblem?.();
    if (problem) throw new ConnectError(problem, Code.ResourceExhausted);
    return engine.create(requestId, spec, image);
  };

  return {
    async createSandbox(request) {
      const requestId = request.requestId;
      const known = requestId ? engine.byRequestId.get(requestId) : undefined;
      if (known) return { sandbox: known.info };
      const inFlight = requestId ? engine.creating.get(requestId) : undefined;
      if (inFlight) return { sandbox: (await inFlight).info };
      const spec = request.spec;
      if (!spec) throw invalid("spec is required");
      checkSandboxSpec(spec);
      // Registered before its first await, so a retry with the same request id joins it.
      const work = createNew(requestId, spec);
      if (requestId) engine.creating.set(requestId, work);
      try {
        return { sandbox: (await work).info };
      } catch (error) {
        if (error instanceof ConnectError) throw error;
        throw new ConnectError(`the sandbox failed to start: ${(error as Error).message}`, Code.Internal);
      } finally {
        if (requestId) engine.creating.delete(requestId);
      }
    },

    getSandbox(request) {
      return { sandbox: sandboxOf(engine, request.sandboxId).info };
    },

    lookupSandbox(request) {
      const app = request.app || "default";
      for (const sandbox of engine.sandboxes.values()) {
        if (sandbox.running && sandbox.spec.app === app && sandbox.spec.name === request.name) {
          return { sandbox: sandbox.info };
        }
      }
      throw new ConnectError(
        `no running sandbox named ${JSON.stringify(request.name)} in app ${JSON.stringify(app)}`,
        Code.NotFound,
      );
    },

    listSandboxes(request) {
      if (request.app) checkName(request.app, "app");
      checkTags(request.tags);
      const pageSize = Math.min(request.pageSize || DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
      const before = request.cursor ? decodeCursor(request.cursor) : Number.POSITIVE_INFINITY;
      const matches = [...engine.sandboxes.values()]
        .filter((s) => s.sequence < before)
        .filter((s) => request.includeFinished || s.running)
        .filter((s) => !request.app || s.spec.app === request.app)
        .filter((s) => Object.entries(request.tags).every(([k, v]) => s.spec.tags[k] === v))
        .sort((a, b) => b.sequence - a.sequence);
      const page = matches.slice(0, pageSize);
      const last = page[page.length - 1];
      return {
        sandboxes: page.map((s) => s.info),
        nextCursor: matches.length > pageSize && last ? encodeCursor(last.sequence) : "",
      };
    },

    async waitSandbox(request, context) {
      const sandbox = sandboxOf(engine, request.sandboxId);
      if (sandbox.running) {
        await sandbox.ended.wait(Math.min(request.timeoutMs || MAX_LONG_POLL_MS, MAX_LONG_POLL_MS), context.signal);
      }
      return { sandbox: sandbox.info, done: sandbox.info.state === SandboxState.FINISHED };
    },

    terminateSandbox(request) {
      const sandbox = sandboxOf(engine, request.sandboxId);
      sandbox.finish(terminated());
      return { sandbox: sandbox.info };
    },

    setTags(request) {
      const sandbox = sandboxOf(engine, request.sandboxId);
      checkTags(request.tags);
      (sandbox.info.spec as NonNullable<Sandbox["spec"]>).tags = { ...request.tags };
      engine.persistSandbox(sandbox);
      return { sandbox: sandbox.info };
    },

    async updateSandbox(request) {
      const sandbox = sandboxOf(engine, request.sandboxId);
      if (request.network) {
        const cidrAllowlist = checkNetworkPolicy(request.network);
        await sandbox.updateNetwork({ blockNetwork: request.network.blockNetwork, cidrAllowlist });
      }
      return { sandbox: sandbox.info };
    },

    async waitUntilReady(request, context) {
      const sandbox = sandboxOf(engine, request.sandboxId);
      const { readiness } = sandbox;
      if (sandbox.running && !readiness.ready) {
        await readiness.changed.wait(Math.min(request.timeoutMs || MAX_LONG_POLL_MS, MAX_LONG_POLL_MS), context.signal);
      }
      return { ready: readiness.ready, readyAtMs: BigInt(readiness.readyAtMs), sandbox: sandbox.info };
    },
  };
}
