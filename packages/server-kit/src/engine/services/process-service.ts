/** ProcessService: start (idempotent by process id), output by offset, stdin by offset, wait, resize, signal. */
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { MAX_LONG_POLL_MS, OutputStream, type ProcessService } from "@sbx/proto";
import { serveOutput } from "../../output-reads.js";
import { checkArgv, checkEnv, checkId, checkLifecycle, checkPtySize, checkWorkdir } from "../../validation.js";
import type { Engine } from "../engine.js";
import { RuntimeDeadlineError } from "../runtime-driver.js";
import { processOf, sandboxOf } from "./lookup.js";

export function processService(engine: Engine): ServiceImpl<typeof ProcessService> {
  return {
    async startProcess(request) {
      const sandbox = sandboxOf(engine, request.sandboxId);
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
        if (JSON.stringify(existing.info.spec?.argv) !== JSON.stringify(spec.argv)) {
          throw new ConnectError(`process ${request.processId} already exists`, Code.AlreadyExists);
        }
        return { process: existing.info };
      }
      if (!sandbox.running || !sandbox.runtime) {
        throw new ConnectError(`sandbox ${request.sandboxId} has finished`, Code.FailedPrecondition);
      }
      const process = sandbox.addProcess(request.processId, spec, undefined, { startsNow: true });
      try {
        await process.start(sandbox.runtime);
      } catch (error) {
        if (!sandbox.running) {
          throw new ConnectError(`sandbox ${request.sandboxId} has finished`, Code.FailedPrecondition);
        }
        // A sandbox too busy to start it in time: DEADLINE_EXCEEDED (core's TimeoutError).
        const code = error instanceof RuntimeDeadlineError ? Code.DeadlineExceeded : Code.Internal;
        throw new ConnectError(`could not start the process: ${(error as Error).message}`, code);
      }
      return { process: process.info };
    },

    getProcess(request) {
      return { process: processOf(engine, request.sandboxId, request.processId).info };
    },

    readOutput(request, context) {
      const process = processOf(engine, request.sandboxId, request.processId);
      process.sandbox.touch();
      const log = request.stream === OutputStream.STDERR ? process.stderr : process.stdout;
      return serveOutput(log, Number(request.offset), process.lifecycle, context.signal, () => process.info);
    },

    async writeStdin(request) {
      const process = processOf(engine, request.sandboxId, request.processId);
      process.sandbox.touch();
      const result = await process.writeStdin(Number(request.offset), request.data, request.eof);
      if ("error" in result) throw new ConnectError(result.error, Code.FailedPrecondition);
      return { committedOffset: BigInt(result.committed) };
    },

    async waitProcess(request, context) {
      const process = processOf(engine, request.sandboxId, request.processId);
      if (process.running) {
        const detach = process.lifecycle.attach(context.signal);
        try {
          await process.ended.wait(Math.min(request.timeoutMs || MAX_LONG_POLL_MS, MAX_LONG_POLL_MS), context.signal);
        } finally {
          detach();
        }
      }
      return { process: process.info, done: !process.running };
    },

    resizePty(request) {
      const process = processOf(engine, request.sandboxId, request.processId);
      const size = checkPtySize(request.size);
      if (!process.info.spec?.pty) {
        throw new ConnectError(`process ${request.processId} has no terminal`, Code.FailedPrecondition);
      }
      process.resize(size.rows, size.cols);
      return {};
    },

    signalProcess(request) {
      const process = processOf(engine, request.sandboxId, request.processId);
      if (request.signal < 1 || request.signal > 64) {
        throw new ConnectError(`invalid signal ${request.signal}`, Code.InvalidArgument);
      }
      process.signal(request.signal);
      return { process: process.info };
    },
  };
}
