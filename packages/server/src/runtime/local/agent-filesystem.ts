/**
 * File operations of a local sandbox, carried out by its agent (packages/server/agent): paths
 * resolve inside the sandbox's root with the sandbox user's permissions, so the kernel itself
 * keeps them from reaching the host. File contents skip the agent: it opens the file, and the
 * server reopens that open file from the host and reads or writes it (agent-files.ts).
 */
import { randomBytes } from "node:crypto";
import type { FileHandle } from "node:fs/promises";
import type {
  FileAnswerJson,
  FileInfoJson,
  FileTypeJson,
  OpenedFileJson,
  RequestJson,
  WatchEventsJson,
  WatchEventTypeJson,
} from "@sbx/proto/agent";
import {
  type RuntimeFileInfo,
  type RuntimeFilesystem,
  RuntimeFsError,
  type RuntimeUpload,
  type RuntimeWatchEvent,
  WatchQueue,
} from "@sbx/server-kit";
import { PositionalWriter, readPieces } from "./file-streams.js";

/** The file calls of the agent protocol. */
type FileOp = "stat" | "list" | "mkdir" | "remove" | "read" | "release" | "upload" | "uploadEnd" | "watch";

/** One file call: a Request with exactly one of the file operations (the id is added when sent). */
export type FileCall = { [K in FileOp]: { [P in K]: NonNullable<RequestJson[P]> } }[FileOp];

/** A successful answer to a file call. */
export type FileAnswer = Omit<FileAnswerJson, "error">;

/** How a caller may give up on an agent call. */
export interface AgentCallOptions {
  /** Stops waiting when aborted: the call rejects with the signal's reason and is forgotten at once. */
  readonly signal?: AbortSignal;
  /**
   * Undoes what a successful answer did (closes the file it opened…), for an answer that
   * arrives after the caller gave up (aborted, or past the deadline).
   */
  readonly undo?: (answer: FileAnswer) => void;
  /** It finishes what an earlier call began (a release, an upload's end): sent even to an agent behind on its requests. */
  readonly followUp?: boolean;
}

/** What the sandbox gives its filesystem: request/answer calls to the agent, and its open files. */
export interface AgentChannel {
  /**
   * Sends the call to the agent and resolves with its answer; rejects with a RuntimeFsError,
   * or a RuntimeDeadlineError when the agent does not answer in time.
   */
  call(request: FileCall, options?: AgentCallOptions): Promise<FileAnswer>;
  /** Reopens, from the host, the file the agent opened (see agent-files.ts). */
  reopen(opened: OpenedFileJson | undefined, access: "read" | "write"): Promise<FileHandle>;
  /** Room for `bytes` more in a file reopened for writing, open here as `fd` (see tmpfs-room.ts). */
  claimRoom(fd: number, bytes: number): Promise<() => void>;
  /** Starts an agent watch: `answered` settles like `call`; events go to `listener` until `stop()` or the sandbox ends. */
  watch(
    watch: NonNullable<RequestJson["watch"]>,
    listener: WatchListener,
  ): { answered: Promise<FileAnswer>; stop(): void };
}

export interface WatchListener {
  events(batch: RuntimeWatchEvent[]): void;
  /** The sandbox ended: no more events. */
  end(): void;
}

const FILE_TYPES: Record<FileTypeJson, RuntimeFileInfo["type"]> = {
  FILE_TYPE_UNSPECIFIED: "other",
  FILE_TYPE_FILE: "file",
  FILE_TYPE_DIRECTORY: "directory",
  FILE_TYPE_SYMLINK: "symlink",
  FILE_TYPE_OTHER: "other",
};

const WATCH_TYPES: Record<WatchEventTypeJson, RuntimeWatchEvent["type"] | undefined> = {
  WATCH_EVENT_TYPE_UNSPECIFIED: undefined,
  WATCH_EVENT_TYPE_CREATE: "create",
  WATCH_EVENT_TYPE_MODIFY: "modify",
  WATCH_EVENT_TYPE_DELETE: "delete",
  WATCH_EVENT_TYPE_RENAME: "rename",
  WATCH_EVENT_TYPE_OVERFLOW: "overflow",
};

/**
 * The longest path a watch event can name: a directory the kernel watches (its path under
 * PATH_MAX, 4096) and a name in it (at most 255). Events are queued for a slow reader by count
 * (MAX_PENDING_WATCH_EVENTS): bounded paths keep that queue bounded in bytes too.
 */
const MAX_WATCH_PATH = 4096 + 1 + 255;

/**
 * The runtime's watch events for the agent's. Events of no known type are left out, and so are
 * events no file could cause (more than two paths, or a path longer than any watched one can
 * be), which only a compromised agent would send.
 */
export function watchEvents(batch: WatchEventsJson): RuntimeWatchEvent[] {
  const out: RuntimeWatchEvent[] = [];
  for (const event of batch.events ?? []) {
    const type = WATCH_TYPES[event.type ?? "WATCH_EVENT_TYPE_UNSPECIFIED"];
    const paths = event.paths ?? [];
    if (!type || paths.length > 2 || paths.some((p) => p.length > MAX_WATCH_PATH)) continue;
    out.push({ type, paths });
  }
  return out;
}

const toInfo = (info: FileInfoJson): RuntimeFileInfo => ({
  name: info.name ?? "",
  path: info.path ?? "",
  type: FILE_TYPES[info.type ?? "FILE_TYPE_UNSPECIFIED"],
  size: Number(info.size ?? "0"),
  mode: info.mode ?? 0,
  mtimeMs: Number(info.mtimeMs ?? "0"),
  symlinkTarget: info.target,
});

/** The part of an answer a call expects; a different answer is refused. */
function expected<K extends keyof FileAnswer>(answer: FileAnswer, key: K): NonNullable<FileAnswer[K]> {
  const value = answer[key];
  if (value === undefined) throw new RuntimeFsError("other", "the sandbox agent gave a malformed answer");
  return value as NonNullable<FileAnswer[K]>;
}

export class AgentFilesystem implements RuntimeFilesystem {
  constructor(readonly channel: AgentChannel) {}

  async stat(path: string): Promise<RuntimeFileInfo> {
    return toInfo(expected(await this.channel.call({ stat: { path } }), "info"));
  }

  async list(path: string): Promise<RuntimeFileInfo[]> {
    return (expected(await this.channel.call({ list: { path } }), "list").entries ?? []).map(toInfo);
  }

  async makeDirectory(path: string, createParents: boolean): Promise<void> {
    await this.channel.call({ mkdir: { path, parents: createParents } });
  }

  async remove(path: string, recursive: boolean): Promise<void> {
    await this.channel.call({ remove: { path, recursive } });
  }

  async read(path: string, offset: number, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const release = (answer: FileAnswer) => {
      this.channel.call({ release: { fd: answer.opened?.fd ?? 0 } }, { followUp: true }).catch(() => {});
    };
    const answer = await this.channel.call({ read: { path } }, { signal, undo: release });
    try {
      return readPieces(await this.channel.reopen(answer.opened, "read").catch(naming(path)), offset, signal);
    } finally {
      // The server's reopened file stands on its own: the agent's copy can go now.
      release(answer);
    }
  }

  async upload(path: string): Promise<RuntimeUpload> {
    const upload = randomBytes(8).toString("hex");
    const drop = () => {
      this.channel.call({ uploadEnd: { path, upload, commit: false } }, { followUp: true }).catch(() => {});
    };
    const answer = await this.channel.call({ upload: { path, upload } }, { undo: drop });
    let writer: PositionalWriter;
    try {
      const handle = await this.channel.reopen(answer.opened, "write").catch(naming(path));
      writer = new PositionalWriter(handle, (bytes) => this.channel.claimRoom(handle.fd, bytes));
    } catch (error) {
      await this.channel.call({ uploadEnd: { path, upload, commit: false } }, { followUp: true }).catch(() => {});
      throw error;
    }
    const end = async (commit: boolean) => {
      let failed: unknown;
      await writer.close().catch((error: unknown) => {
        failed = error;
      });
      // Bytes that never reached the file must not be moved into place.
      await this.channel.call({ uploadEnd: { path, upload, commit: commit && !failed } }, { followUp: true });
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
