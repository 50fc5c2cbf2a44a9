/**
 * Read pacing for a sandboxed process's output pipes.
 *
 * A reader that re-arms at once after every read wakes up for every few bytes a trickling
 * writer puts in the pipe: a process writing one byte per write(2) makes the server read
 * (and log, and send) once per byte or so, a core's worth of wake-ups for four such sandboxes,
 * taken from every other sandbox's calls. After a small read the stream stops reading for a
 * few milliseconds, so the pipe (1 MiB, see agent.py) gathers what the writer adds meanwhile
 * and one read takes it all; while the stream is not read, the writer's writes wake nobody.
 * Big reads (a bulk producer) re-arm at once: pacing never slows throughput, it only adds up
 * to PACE_MS to output that arrives in small pieces right after other output.
 */
import type { Socket } from "node:net";

/** Reads smaller than this are a trickle: the next read waits PACE_MS. */
export const PACE_BELOW_BYTES = 16 * 1024;
/** How long a trickling stream waits before its next read (at most 200 reads/s). */
export const PACE_MS = 5;

/** A paced stream's controls. */
export interface PacedReads {
  /**
   * Stops reading until every hold is released (back-pressure, say). Pause a paced stream
   * only through this: pacing's timer resumes a stream that nothing holds.
   */
  hold(): void;
  release(): void;
  /** Ends pacing (and clears a pending timer). */
  stop(): void;
}

/** Paces `stream`'s reads. Call before the first 'data' listener is added: it must see every chunk first. */
export function paceReads(stream: Socket): PacedReads {
  let timer: NodeJS.Timeout | undefined;
  let holds = 0;
  const resumeIfFree = () => {
    if (!timer && holds === 0 && !stream.destroyed) stream.resume();
  };
  const onData = (chunk: Uint8Array) => {
    if (chunk.byteLength >= PACE_BELOW_BYTES || timer) return;
    stream.pause();
    timer = setTimeout(() => {
      timer = undefined;
      resumeIfFree();
    }, PACE_MS);
  };
  stream.on("data", onData);
  const stop = () => {
    clearTimeout(timer);
    timer = undefined;
    stream.off("data", onData);
  };
  stream.once("close", stop);
  return {
    hold: () => {
      holds++;
      stream.pause();
    },
    release: () => {
      if (holds > 0 && --holds === 0) resumeIfFree();
    },
    stop,
  };
}
