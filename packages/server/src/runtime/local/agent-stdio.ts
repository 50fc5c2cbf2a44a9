/**
 * A process's stdio, seen from the host. The agent makes each process's pipes and holds the
 * server's ends (stdin's write end, the read ends of stdout and stderr), naming them in its
 * Started event; the server reopens those open pipes through `/proc/<agent's host pid>/fd/<n>`
 * (as it does files, see agent-files.ts), then tells the agent to let go of its copies. No
 * name in the sandbox ever leads to a process's pipes, and starting a process costs the server
 * three opens: no FIFO to make, move or unlink.
 *
 * The agent is non-dumpable and its event pipe is out of the sandbox's reach, so the
 * descriptors named are the agent's own; still, each one must be an anonymous pipe (pipefs),
 * before it is opened and after, and the agent the same process throughout (no recycled pid).
 */
import { closeSync, constants, openSync, statfsSync, statSync } from "node:fs";
import type { Socket } from "node:net";
import type { StartedJson } from "@sbx/proto/agent";
import { type AgentProcess, processStartTimeSync } from "./agent-files.js";
import { pipeReader, pipeWriter } from "./fifo.js";

/** statfs type of the kernel's anonymous pipes. */
const PIPEFS = 0x50495045;

/**
 * The device of the kernel's one pipefs, once a pipe has been seen to be on it (every anonymous
 * pipe is): a later pipe on that device needs no statfs.
 */
let pipefsDevice: number | undefined;

/** Whether `path` (a descriptor's link in /proc, followed: never opened here) is an anonymous pipe. */
function isAnonymousPipe(path: string): boolean {
  const st = statSync(path);
  if (!st.isFIFO()) return false;
  if (st.dev === pipefsDevice) return true;
  if (statfsSync(path).type !== PIPEFS) return false;
  pipefsDevice = st.dev;
  return true;
}

/** The server's ends of a process's stdio. */
export interface ProcessStdio {
  readonly stdin: Socket;
  readonly stdout: Socket;
  /** None when stderr is merged into stdout (or a terminal). */
  readonly stderr: Socket | undefined;
}

const refuse = (why: string) => new Error(`refused the process's stdio the sandbox agent named: ${why}`);

/**
 * Reopens the pipes named in `started` (synchronously: the exit may be the next event). Each is
 * checked before it is opened as well as after: the server opens as root, and the open of a
 * FIFO or a device acts by itself (and a recycled pid's descriptors are a host process's).
 */
export function openProcessStdio(agent: AgentProcess, started: StartedJson): ProcessStdio {
  const opened: number[] = [];
  const reopen = (fd: number | undefined, flags: number): number => {
    if (fd === undefined || !Number.isSafeInteger(fd) || fd < 3) throw refuse("no such descriptor");
    const link = `/proc/${agent.pid}/fd/${fd}`;
    let pipe: boolean;
    let mine: number;
    try {
      pipe = isAnonymousPipe(link);
    } catch {
      throw refuse("no such descriptor");
    }
    if (!pipe) throw refuse("not a pipe");
    try {
      mine = openSync(link, flags | constants.O_NONBLOCK | constants.O_NOCTTY);
    } catch {
      throw refuse("cannot reopen it");
    }
    opened.push(mine);
    if (!isAnonymousPipe(`/proc/self/fd/${mine}`)) throw refuse("not a pipe");
    return mine;
  };
  if (processStartTimeSync(agent.pid) !== agent.startTime) throw refuse("the agent is gone");
  try {
    // Read-write: the open never fails for want of a reader (the process may be gone already).
    const stdin = reopen(started.stdinFd, constants.O_RDWR);
    const stdout = reopen(started.stdoutFd, constants.O_RDONLY);
    const stderr = started.stderrFd === undefined ? undefined : reopen(started.stderrFd, constants.O_RDONLY);
    if (processStartTimeSync(agent.pid) !== agent.startTime) throw refuse("the agent is gone");
    return {
      stdin: pipeWriter(stdin),
      stdout: pipeReader(stdout),
      stderr: stderr === undefined ? undefined : pipeReader(stderr),
    };
  } catch (error) {
    for (const fd of opened) closeSync(fd);
    throw error;
  }
}
