/**
 * A process's stdio, seen from the host. The agent makes each process's pipes and holds the
 * server's ends (stdin's write end, the read ends of stdout and stderr), naming them in its
 * Started event; the server reopens those open pipes through `/proc/<agent's host pid>/fd/<n>`
 * (as it does files, see agent-files.ts), then tells the agent to let go of its copies. No
 * name in the sandbox ever leads to a process's pipes, and starting a process costs the server
 * three opens: no FIFO to make, move or unlink.
 *
 * The agent is non-dumpable and its event pipe is out of the sandbox's reach, so the
 * descriptors named are the agent's own; still, each reopened one must be an anonymous pipe
 * (pipefs), and the agent must be the same process afterwards (no recycled pid).
 */
import { closeSync, constants, fstatSync, openSync, statfsSync } from "node:fs";
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

function isAnonymousPipe(fd: number): boolean {
  const st = fstatSync(fd);
  if (!st.isFIFO()) return false;
  if (st.dev === pipefsDevice) return true;
  if (statfsSync(`/proc/self/fd/${fd}`).type !== PIPEFS) return false;
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

/** Reopens the pipes named in `started` (synchronously: the exit may be the next event). */
export function openProcessStdio(agent: AgentProcess, started: StartedJson): ProcessStdio {
  const opened: number[] = [];
  const reopen = (fd: number | undefined, flags: number): number => {
    if (fd === undefined || !Number.isSafeInteger(fd) || fd < 3) throw refuse("no such descriptor");
    let mine: number;
    try {
      mine = openSync(`/proc/${agent.pid}/fd/${fd}`, flags | constants.O_NONBLOCK | constants.O_NOCTTY);
    } catch {
      throw refuse("cannot reopen it");
    }
    opened.push(mine);
    if (!isAnonymousPipe(mine)) throw refuse("not a pipe");
    return mine;
  };
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
