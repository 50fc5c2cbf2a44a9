/**
 * Uploads in progress, for WriteFile (Connect) and the server's raw files route, in the sbx
 * server and the fake alike. An upload is
 * known by (sandbox, upload id); each chunk adds the bytes at its offset, applied once however
 * often it is retried (bytes below what is already written are skipped), and the chunk that
 * finishes moves the file into place. Chunks of one upload run one at a time, in arrival order.
 *
 * A chunk whose body is cut (the client went away mid-request) keeps what it wrote: the
 * client resumes from the committed offset. Any other failure drops the upload (its temporary
 * file removed): the client has to start over, and is told so.
 */
import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Where an upload's bytes go. Failures are thrown as they should reach the client (Connect
 * errors with a FilesystemError detail).
 */
export interface UploadTarget {
  /** Stores `data` after what came before (resolving when more may be written). */
  write(data: Uint8Array): Promise<void> | void;
  /** Moves the written bytes onto the path in one rename (keeping an existing file's mode). */
  commit(): Promise<void> | void;
  /** Drops the upload and its temporary file. */
  abort(): Promise<void> | void;
}

/** An upload with no chunk for this long is dropped (its temporary file removed). */
export const UPLOAD_IDLE_MS = 10 * 60_000;
/** How long a finished upload's answer is kept, for a retried last chunk. */
const FINISHED_KEPT_MS = 10 * 60_000;

export interface ChunkResult {
  readonly committedOffset: number;
  readonly finished: boolean;
}

export interface Chunk {
  readonly sandboxId: string;
  readonly path: string;
  /** Starts the upload's target (called for the first chunk only). */
  readonly start: () => Promise<UploadTarget> | UploadTarget;
  readonly uploadId: string;
  readonly offset: number;
  /** The bytes; an async iterable for a body still arriving. */
  readonly data: Uint8Array | AsyncIterable<Uint8Array>;
  readonly finish: boolean;
}

/** The chunk's body failed (the client went away): not the upload's fault. */
export class BodyCut extends Error {}

interface Upload {
  readonly path: string;
  readonly target: UploadTarget;
  committed: number;
  queue: Promise<unknown>;
  idle: ReturnType<typeof setTimeout>;
}

export class Uploads {
  readonly #active = new Map<string, Upload>();
  readonly #finished = new Map<string, number>();

  async apply(chunk: Chunk): Promise<ChunkResult> {
    const key = `${chunk.sandboxId}/${chunk.uploadId}`;
    const done = this.#finished.get(key);
    if (done !== undefined) return { committedOffset: done, finished: true };
    const upload = this.#active.get(key) ?? (await this.#start(key, chunk));
    if (upload.path !== chunk.path) {
      throw new ConnectError(`upload ${chunk.uploadId} writes ${upload.path}, not ${chunk.path}`, Code.InvalidArgument);
    }
    const step = upload.queue.then(() => this.#write(key, upload, chunk));
    upload.queue = step.catch(() => {});
    try {
      return await step;
    } catch (error) {
      const keep =
        error instanceof BodyCut || (error instanceof ConnectError && error.code === Code.FailedPrecondition);
      if (!keep) this.#drop(key, upload);
      throw error;
    }
  }

  async #start(key: string, chunk: Chunk): Promise<Upload> {
    if (chunk.offset !== 0) {
      throw new ConnectError(
        `upload ${chunk.uploadId} is not known here (it expired, or the server restarted): start it again from offset 0`,
        Code.FailedPrecondition,
      );
    }
    const target = await chunk.start();
    const raced = this.#active.get(key); // a concurrent first chunk may have won
    if (raced) {
      quietly(() => target.abort());
      return raced;
    }
    const upload: Upload = {
      path: chunk.path,
      target,
      committed: 0,
      queue: Promise.resolve(),
      idle: unref(setTimeout(() => this.#drop(key, upload), UPLOAD_IDLE_MS)),
    };
    this.#active.set(key, upload);
    return upload;
  }

  async #write(key: string, upload: Upload, chunk: Chunk): Promise<ChunkResult> {
    const done = this.#finished.get(key);
    if (done !== undefined) return { committedOffset: done, finished: true };
    if (chunk.offset > upload.committed) {
      throw new ConnectError(
        `upload ${chunk.uploadId}: chunk at offset ${chunk.offset}, but only ${upload.committed} bytes are written`,
        Code.FailedPrecondition,
      );
    }
    clearTimeout(upload.idle);
    upload.idle = unref(setTimeout(() => this.#drop(key, upload), UPLOAD_IDLE_MS));
    let position = chunk.offset;
    const take = async (data: Uint8Array) => {
      const fresh = data.subarray(Math.min(Math.max(upload.committed - position, 0), data.byteLength));
      position += data.byteLength;
      if (fresh.byteLength === 0) return;
      await upload.target.write(fresh);
      upload.committed += fresh.byteLength;
    };
    if (chunk.data instanceof Uint8Array) await take(chunk.data);
    else {
      const pieces = chunk.data[Symbol.asyncIterator]();
      for (;;) {
        let next: IteratorResult<Uint8Array>;
        try {
          next = await pieces.next();
        } catch (error) {
          throw new BodyCut(`the chunk's body was cut: ${(error as Error).message}`, { cause: error });
        }
        if (next.done) break;
        await take(next.value);
      }
    }
    // A finishing chunk that ends short of what is written is a stale retry: not the end.
    if (!chunk.finish || position < upload.committed) return { committedOffset: upload.committed, finished: false };
    clearTimeout(upload.idle);
    this.#active.delete(key);
    await upload.target.commit();
    this.#finished.set(key, upload.committed);
    unref(setTimeout(() => this.#finished.delete(key), FINISHED_KEPT_MS));
    return { committedOffset: upload.committed, finished: true };
  }

  #drop(key: string, upload: Upload): void {
    clearTimeout(upload.idle);
    if (this.#active.get(key) === upload) this.#active.delete(key);
    quietly(() => upload.target.abort());
  }
}

/** Runs a clean-up whose failure changes nothing for the caller. */
function quietly(cleanup: () => Promise<void> | void): void {
  try {
    Promise.resolve(cleanup()).catch(() => {});
  } catch {}
}

/** Timers here never keep a process alive (Node); elsewhere a no-op. */
function unref<T>(timer: T): T {
  (timer as { unref?: () => void }).unref?.();
  return timer;
}
