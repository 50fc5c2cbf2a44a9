/** What every file call does first (find the sandbox, check the path) and how it reports failures. */
import { Code, ConnectError } from "@connectrpc/connect";
import { filesystemError } from "../../filesystem-errors.js";
import type { UploadTarget } from "../../uploads.js";
import { checkPath } from "../../validation.js";
import type { Engine } from "../engine.js";
import type { EngineSandbox } from "../engine-sandbox.js";
import { RuntimeDeadlineError, type RuntimeFilesystem, RuntimeFsError } from "../runtime-driver.js";
import { sandboxOf } from "./lookup.js";

/**
 * Runs a file call, turning runtime failures into Connect errors with a FilesystemError detail
 * (and a sandbox that did not answer in time into DEADLINE_EXCEEDED: core's TimeoutError).
 */
export async function fsCall<A>(path: string, call: () => Promise<A>): Promise<A> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof RuntimeFsError) throw filesystemError(error.kind, path, error.message);
    if (error instanceof RuntimeDeadlineError) throw new ConnectError(error.message, Code.DeadlineExceeded);
    throw error;
  }
}

/** The running sandbox's filesystem (marking the sandbox active), after checking `path`. */
export function filesOf(
  engine: Engine,
  sandboxId: string,
  path: string,
): { sandbox: EngineSandbox; fs: RuntimeFilesystem } {
  const sandbox = sandboxOf(engine, sandboxId);
  checkPath(path);
  if (!sandbox.running || !sandbox.runtime) {
    throw new ConnectError(`sandbox ${sandboxId} has finished`, Code.FailedPrecondition);
  }
  sandbox.touch();
  return { sandbox, fs: sandbox.runtime.fs };
}

/** Starts an upload to `path` in the sandbox, its failures reported as file errors. */
export async function startUpload(fs: RuntimeFilesystem, path: string): Promise<UploadTarget> {
  const upload = await fsCall(path, () => fs.upload(path));
  return {
    write: (data) => fsCall(path, () => upload.write(data)),
    commit: () => fsCall(path, () => upload.commit()),
    abort: () => upload.abort(),
  };
}
