/** How a sandbox or process ended, as the wire says it. */
import { create } from "@bufbuild/protobuf";
import { type ExitStatus, ExitStatusSchema } from "@sbx/proto";
import type { RuntimeExit } from "./runtime-driver.js";

export const exited = (code: number): ExitStatus => create(ExitStatusSchema, { kind: { case: "exited", value: code } });
export const signaled = (signal: number): ExitStatus =>
  create(ExitStatusSchema, { kind: { case: "signaled", value: signal } });
export const timedOut = (): ExitStatus => create(ExitStatusSchema, { kind: { case: "timedOut", value: true } });
/** A sandbox stopped because its idle timeout ran out: a timeout (124) that says it was idle. */
export const idleTimedOut = (): ExitStatus =>
  create(ExitStatusSchema, { kind: { case: "timedOut", value: true }, idle: true });
export const terminated = (): ExitStatus => create(ExitStatusSchema, { kind: { case: "terminated", value: true } });

export const fromRuntimeExit = (exit: RuntimeExit): ExitStatus =>
  exit.kind === "exited" ? exited(exit.code) : signaled(exit.signal);
