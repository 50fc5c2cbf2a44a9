import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { MAX_LONG_POLL_MS, OutputStream, type ProcessService } from "@sbx/proto";
import { checkArgv, checkEnv, checkId, checkLifecycle, checkPtySize, checkWorkdir, serveOutput } from "@sbx/server-kit";
import { FakeProcess, signaled } from "./model.js";
import type { FakeState } from "./state.js";

const MAX_HOLD_MS = MAX_LONG_POLL_MS;

export function processService(state: FakeState): ServiceImpl<typeof ProcessService> {
  return {
    startProcess(request) {
      const sandbox = state.sandbox(request.sandboxId);
      sandbox.touch(); // starting work is activity (status polls are not)
      checkId(request.processId, "process id");
      const spec = request.spec;
      if (!spec) throw new ConnectError("spec is required", Code.InvalidArgument);
      checkArgv(spec.argv, "argv", false);
      checkWorkdir(spec.workdir);
      checkEnv(spec.env);
      checkLifecycle(spec);
      const existing = sandbox.processes.get(request.processId);
      if (existing) {
        const same = JSON.stringify(existing.info.spec?.argv) === JSON.stringify(spec.argv);
        if (!same) throw new ConnectError(`process ${request.processId} already exists`, Code.AlreadyExists);
        return { process: existing.info };
      }
      if (!sandbox.running) {
        throw new ConnectError(`sandbox ${request.sandboxId} has finished`, Code.FailedPrecondition);
      }
      const process = new FakeProcess(sandbox, request.processId, spec, state.nextPid());
      sandbox.processes.set(request.processId, process);
      process.start(state.handlers, state.defaultHandlers);
      return { process: process.info };
    },

    getProcess(request) {
      return { process: state.process(request.sandboxId, request.processId).info };
    },

    readOutput(request, context) {
      const process = state.process(request.sandboxId, request.processId);
      process.sandbox.touch();
      const log = request.stream === OutputStream.STDERR ? process.stderr : process.stdout;
      return serveOutput(log, Number(request.offset), process.lifecycle, context.signal, () => process.info);
    },

    writeStdin(request) {
      const process = state.process(request.sandboxId, request.processId);
      process.sandbox.touch();
      const result = process.writeStdin(Number(request.offset), request.data, request.eof);
      if ("error" in result) throw new ConnectError(result.error, Code.FailedPrecondition);
      return { committedOffset: BigInt(result.committed) };
    },

    async waitProcess(request, context) {
      const process = state.process(request.sandboxId, request.processId);
      if (process.running) {
        const detach = process.lifecycle.attach(context.signal);
        try {
          await process.ended.wait(Math.min(request.timeoutMs || MAX_HOLD_MS, MAX_HOLD_MS), context.signal);
        } finally {
          detach();
        }
      }
      return { process: process.info, done: !process.running };
    },

    resizePty(request) {
      const process = state.process(request.sandboxId, request.processId);
      const size = checkPtySize(request.size);
      if (!process.info.spec?.pty) {
        throw new ConnectError(`process ${request.processId} has no terminal`, Code.FailedPrecondition);
      }
      process.resize(size.rows, size.cols);
      return {};
    },

    signalProcess(request) {
      const process = state.process(request.sandboxId, request.processId);
      if (request.signal < 1 || request.signal > 64) {
        throw new ConnectError(`invalid signal ${request.signal}`, Code.InvalidArgument);
      }
      process.finish(signaled(request.signal));
      return { process: process.info };
    },
  };
}
