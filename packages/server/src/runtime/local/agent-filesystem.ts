/**
 * File operations of a local sandbox, carried out by its agent (see agent.py): paths resolve
 * inside the sandbox's root with the sandbox user's permissions, so the kernel itself keeps
 * them from reaching the host. File contents skip the agent: it opens the file, and the
 * server reopens that open file from the host and reads or writes it (agent-files.ts).
 */
import { randomBytes } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import {
  type RuntimeFileInfo,
  type RuntimeFilesystem,
  RuntimeFsError,
  type RuntimeUpload,
  type RuntimeWatchEvent,
  WatchQueue,
} from "@sbx/server-kit";
import { PositionalWriter, readPieces } from "./file-streams.js";

/** How a caller may give up on an agent call. */
export interface AgentCallOptions {
  /** Stops waiting when aborted: the call rejects with the signal's reason and is forgotten at once. */
  readonly signal?: AbortSignal;
  /**
   * Undoes what a successful answer did (closes the file it opened…), for an answer that
   * arrives after the caller gave up (aborted, or past the deadline).
   */
  readonly undo?: (answer: unknown) => void;
}

/** What the sandbox gives its filesystem: request/answer calls to the agent, and its open files. */
export interface AgentChannel {
  /**
   * Sends `{op, id, ...fields}` to the agent and resolves with its answer; rejects with a
   * RuntimeFsError, or a RuntimeDeadlineError when the agent does not answer in time.
   */
  call(op: string, fields: Record<string, unknown>, options?: AgentCallOptions): Promise<unknown>;
  /** Reopens, from the host, the file the agent opened as descriptor `answer.fd` (see agent-files.ts). */
  reopen(answer: unknown, access: "read" | "write"): Promise<FileHandle>;
  /** Starts an agent watch: `answered` settles like `call`; events go to `listener` until `stop()` or the sandbox ends. */
  watch(fields: Record<string, unknown>, listener: WatchListener): { answered: Promise<unknown>; stop(): void };
}

export interface WatchListener {
  events(batch: RuntimeWatchEvent[]): void;
  /** The sandbox ended: no more events. */
  end(): void;
}

interface AgentFileInfo {
  name: string;
  path: string;
  type: RuntimeFileInfo["type"];
  size: number;
  mode: number;
  mtime_ms: number;
  target?: string;
}

const toInfo = (info: AgentFileInfo): RuntimeFileInfo => ({
  name: info.name,
  path: info.path,
  type: info.type,
  size: info.size,
  mode: info.mode,
  mtimeMs: info.mtime_ms,
  symlinkTarget: info.target,
});

export class AgentFilesystem implements RuntimeFilesystem {
  constructor(readonly channel: AgentChannel) {}

  async stat(path: string): Promise<RuntimeFileInfo> {
    return toInfo((await this.channel.call("stat", { path })) as AgentFileInfo);
  }

  async list(path: string): Promise<RuntimeFileInfo[]> {
    return ((await this.channel.call("list", { path })) as AgentFileInfo[]).map(toInfo);
  }

  async makeDirectory(path: string, createParents: boolean): Promise<void> {
    await this.channel.call("mkdir", { path, parents: createParents });
  }

  async remove(path: string, recursive: boolean): Promise<void> {
    await this.channel.call("remove", { path, recursive });
  }

  async read(path: string, offset: number, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const release = (answer: unknown) => {
      const fd = (answer as { fd?: unknown } | null)?.fd;
      this.channel.call("release", { fd }).catch(() => {});
    };
    const answer = await this.channel.call("read", { path }, { signal, undo: release });
    try {
      return readPieces(await this.channel.reopen(answer, "read").catch(naming(path)), offset, signal);
    } finally {
      // The server's reopened file stands on its own: the agent's copy can go now.
      release(answer);
    }
  }

  async upload(path: string): Promise<RuntimeUpload> {
    const upload = randomBytes(8).toString("hex");
    const drop = () => {
      this.channel.call("upload_end", { path, upload, commit: false }).catch(() => {});
    };
    const answer = await this.channel.call("upload", { path, upload }, { undo: drop });
    let writer: PositionalWriter;
    try {
      writer = new PositionalWriter(await this.channel.reopen(answer, "write").catch(naming(path)));
    } catch (error) {
      await this.channel.call("upload_end", { path, upload, commit: false }).catch(() => {});
      throw error;
    }
    const end = async (commit: boolean) => {
      let failed: unknown;
      await writer.close().catch((error: unknown) => {
        failed = error;
      });
      // Bytes that never reached the file must not be moved into place.
      await this.channel.call("upload_end", { path, upload, commit: commit && !failed });
      if (commit && failed) throw writeError(path, failed);
    };
    return {
      write: (data) => writer.write(data).catch((error: unknown) => Promise.reject(writeError(path, error))),
      commit: () => end(true),
      abort: () => end(false),
    };
  }

  async watch(path: string, recursive: boolean, signal: AbortSignal): Promise<AsyncIterable<RuntimeWatchEvent[]>> {
    const queue = new WatchQueue<RuntimeWatchEvent>({ type: "overflow", paths: [] });
    const subscription = this.channel.watch(
      { path, recursive },
      { events: (batch) => queue.push(batch), end: () => queue.end() },
    );
    try {
      await subscription.answered;
    } catch (error) {
      subscription.stop();
      throw error;
    }
    return queue.drain(signal, () => subscription.stop());
  }
}

/** Rethrows a refusal with the path it was about. */
const naming =
  (path: string) =>
  (error: unknown): never => {
    if (error instanceof RuntimeFsError) throw new RuntimeFsError(error.kind, `${path}: ${error.message}`);
    throw error;
  };

/** A failed write as a filesystem error: a full disk or quota says so. */
function writeError(path: string, error: unknown): RuntimeFsError {
  if (error instanceof RuntimeFsError) return error;
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOSPC" || code === "EDQUOT")
    return new RuntimeFsError("no_space", `${path}: no space left on the sandbox's disk`);
  return new RuntimeFsError("other", `${path}: the upload failed: ${(error as Error)?.message ?? String(error)}`);
}
