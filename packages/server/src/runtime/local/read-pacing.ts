/**
 * Read pacing for a sandboxed process's output pipes.
 *
 * A reader that re-arms at once after every read wakes up for every few bytes a trickling
 * writer puts in the pipe: a process writing one byte per write(2) makes the server read
 * (and log, and send) once per byte or so, a core's worth of wake-ups for four such sandboxes,
 * taken from every other sandbox's calls. Once a stream has shown a trickle (small reads
 * faster than one per PACE_MS, beyond a burst of TRICKLE_BURST), it stops reading for PACE_MS
 * after each small read, so the pipe (1 MiB, see agent/processes.go) gathers what the writer adds
 * meanwhile and one read takes it all; while the stream is not read, the writer's writes wake
 * nobody.
 *
 * Only a trickle is paced: a line now and then (an interactive process, a progress line, the
 * first output after a pause) is read at once, and so is a bulk producer (big reads; the odd
 * small one when the server catches up does not make it a trickle). A token bucket: each
 * small read takes a token, a token comes back every PACE_MS, a big read refills the bucket.
 */
import type { Socket } from "node:net";

/** Reads smaller than this may be a trickle; a bigger read refills the bucket. */
export const PACE_BELOW_BYTES = 16 * 1024;
/** How long a trickling stream waits before its next read (at most 200 reads/s). */
export const PACE_MS = 5;
/** Small reads taken at once before pacing starts (and the bucket's size). */
export const TRICKLE_BURST = 16;

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
  let tokens = TRICKLE_BURST;
  /** When tokens were last counted: they come back one per PACE_MS from here. */
  let counted = performance.now();
  const resumeIfFree = () => {
    if (!timer && holds === 0 && !stream.destroyed) stream.resume();
  };
  const onData = (chunk: Uint8Array) => {
    if (chunk.byteLength >= PACE_BELOW_BYTES) {
      tokens = TRICKLE_BURST;
      return;
    }
    if (timer) return;
    const now = performance.now();
    tokens = Math.min(TRICKLE_BURST, tokens + Math.max(0, now - counted) / PACE_MS);
    counted = now;
    if (tokens >= 1) {
      tokens -= 1;
      return;
    }
    // A trickle: the pause is the wait for this read's token, so a steady trickle gets one
    // read per PACE_MS (the token that comes back during the pause is already spent).
    counted = now + PACE_MS;
    tokens = 0;
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
