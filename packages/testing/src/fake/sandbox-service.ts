import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { MAX_LONG_POLL_MS, type Sandbox, type SandboxService, SandboxState } from "@sbx/proto";
import { checkName, checkSandboxSpec, checkTags, invalid } from "@sbx/server-kit";
import { FakeSandbox, terminated } from "./model.js";
import type { FakeState } from "./state.js";

const MAX_HOLD_MS = MAX_LONG_POLL_MS;
const encodeCursor = (sequence: number) => btoa(`seq:${sequence}`);
const decodeCursor = (cursor: string): number => {
  try {
    const match = /^seq:(\d+)$/.exec(atob(cursor));
    if (match) return Number(match[1]);
  } catch {}
  throw invalid("invalid list cursor");
};

export function sandboxService(state: FakeState): ServiceImpl<typeof SandboxService> {
  return {
    createSandbox(request) {
      const existing = request.requestId ? state.byRequestId.get(request.requestId) : undefined;
      if (existing) return { sandbox: existing.info };
      const spec = request.spec;
      if (!spec) throw invalid("spec is required");
      checkSandboxSpec(spec);
      if (spec.name) {
        for (const other of state.sandboxes.values()) {
          if (other.running && other.info.spec?.app === spec.app && other.info.spec?.name === spec.name) {
            throw new ConnectError(
              `a running sandbox named ${JSON.stringify(spec.name)} already exists in app ${JSON.stringify(spec.app)}`,
              Code.AlreadyExists,
            );
          }
        }
      }
      const sandbox = new FakeSandbox(
        state.newSandboxId(),
        spec,
        request.requestId,
        state.nextSequence(),
        state.outputRetentionBytes,
      );
      state.sandboxes.set(sandbox.info.id, sandbox);
      if (request.requestId) state.byRequestId.set(request.requestId, sandbox);
      sandbox.start(state.handlers, state.defaultHandlers, state.nextPid);
      return { sandbox: sandbox.info };
    },

    getSandbox(request) {
      return { sandbox: state.sandbox(request.sandboxId).info };
    },

    lookupSandbox(request) {
      const app = request.app || "default";
      for (const sandbox of state.sandboxes.values()) {
        if (sandbox.running && sandbox.info.spec?.app === app && sandbox.info.spec?.name === request.name) {
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
      const pageSize = Math.min(request.pageSize || 100, 1000);
      const before = request.cursor ? decodeCursor(request.cursor) : Number.POSITIVE_INFINITY;
      const matches = [...state.sandboxes.values()]
        .filter((s) => s.sequence < before)
        .filter((s) => request.includeFinished || s.running)
        .filter((s) => !request.app || s.info.spec?.app === request.app)
        .filter((s) => Object.entries(request.tags).every(([k, v]) => s.info.spec?.tags[k] === v))
        .sort((a, b) => b.sequence - a.sequence);
      const page = matches.slice(0, pageSize);
      const last = page[page.length - 1];
      return {
        sandboxes: page.map((s) => s.info),
        nextCursor: matches.length > pageSize && last ? encodeCursor(last.sequence) : "",
      };
    },

    async waitSandbox(request, context) {
      const sandbox = state.sandbox(request.sandboxId);
      if (sandbox.running) {
        await sandbox.changes.wait(Math.min(request.timeoutMs || MAX_HOLD_MS, MAX_HOLD_MS), context.signal);
      }
      return { sandbox: sandbox.info, done: sandbox.info.state === SandboxState.FINISHED };
    },

    terminateSandbox(request) {
      const sandbox = state.sandbox(request.sandboxId);
      sandbox.finish(terminated());
      return { sandbox: sandbox.info };
    },

    setTags(request) {
      const sandbox = state.sandbox(request.sandboxId);
      checkTags(request.tags);
      (sandbox.info.spec as NonNullable<Sandbox["spec"]>).tags = { ...request.tags };
      return { sandbox: sandbox.info };
    },
  };
}
