/**
 * File operations of a local sandbox, carried out by its agent (see agent.py): paths resolve
 * inside the sandbox's root with the sandbox user's permissions, so the kernel itself keeps
 * them from reaching the host. File contents travel through a FIFO pair per transfer, the
 * same way process stdio does, never through the control channel.
 */
import { rm } from "node:fs/promises";
import type { Socket } from "node:net";
import { join } from "node:path";
import { WatchQueue } from "@sbx/server-kit";
import {
  type RuntimeFileInfo,
  type RuntimeFilesystem,
  RuntimeFsError,
  type RuntimeUpload,
  type RuntimeWatchEvent,
} from "../runtime.js";
import { openFifoReader, openFifoWriter } from "./fifo.js";

/** What the sandbox gives its filesystem: a request/answer call to the agent, and FIFO dirs. */
export interface AgentChannel {
  /** Sends `{op, id, ...fields}` to the agent and resolves with its answer (or rejects with a RuntimeFsError). */
  call(op: string, fields: Record<string, unknown>): Promise<unknown>;
  /** A fresh directory of stdio FIFOs: its path on the host and inside the sandbox. */
  fifoDir(): Promise<{ host: string; sandbox: string; id: string }>;
  /** Starts an agent watch: `answered` settles like `call`; events go to `listener` until `stop()` or the sandbox ends. */
  watch(fields: Record<string, unknown>, listener: WatchListener): { answered: Promise<unknown>; stop(): void };
}

export interface WatchListener {
  events(batch: RuntimeWatchEvent[]): void;
  /** The sandbox ended: no more events. */
  end(): void;
}

/** How much of an upload may wait in the server to be written into the agent's pipe. */
const UPLOAD_BUFFER_BYTES = 4 * 1024 * 1024;

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

  /** A transfer's FIFO dir, and how to remove it. */
  async #transferDir() {
    const dir = await this.channel.fifoDir();
    return { ...dir, cleanup: () => rm(dir.host, { recursive: true, force: true }).catch(() => {}) };
  }

  async read(path: string, offset: number, signal: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    const dir = await this.#transferDir();
    const { cleanup } = dir;
    const reader = openFifoReader(join(dir.host, "stdout"));
    try {
      await this.channel.call("read", { path, offset, dir: dir.sandbox });
    } catch (error) {
      reader.destroy();
      await cleanup();
      throw error;
    }
    return chunks(reader, signal, cleanup);
  }

  async upload(path: string): Promise<RuntimeUpload> {
    const dir = await this.#transferDir();
    const { cleanup } = dir;
    // Several MiB may wait in the writer, so the body keeps arriving while the agent stores.
    const writer = openFifoWriter(join(dir.host, "stdin"), UPLOAD_BUFFER_BYTES);
    let failed: Error | undefined;
    writer.on("error", (error) => {
      failed ??= error;
    });
    const id = dir.id;
    try {
      await this.channel.call("upload", { path, dir: dir.sandbox, upload: id });
    } catch (error) {
      writer.destroy();
      await cleanup();
      throw error;
    }
    const end = async (commit: boolean) => {
      await new Promise<void>((resolve) => writer.end(resolve));
      try {
        // Bytes that never reached the agent must not be moved into place.
        await this.channel.call("upload_end", { path, upload: id, commit: commit && !failed });
      } finally {
        await cleanup();
      }
      if (commit && failed) throw new RuntimeFsError("other", `${path}: the upload failed: ${failed.message}`);
    };
    return {
      write: (data) => {
        if (failed || writer.destroyed) return Promise.reject(failed ?? new Error("the upload was closed"));
        if (writer.write(data)) return Promise.resolve();
        return new Promise<void>((resolve, reject) => {
          const settle = () => {
            writer.off("drain", settle);
            writer.off("close", settle);
            if (failed || writer.destroyed) reject(failed ?? new Error("the upload was closed"));
            else resolve();
          };
          writer.on("drain", settle);
          writer.on("close", settle);
        });
      },
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

async function* chunks(reader: Socket, signal: AbortSignal, cleanup: () => Promise<void>): AsyncGenerator<Uint8Array> {
  const onAbort = () => reader.destroy(signal.reason as Error);
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const chunk of reader as AsyncIterable<Buffer>) yield chunk;
  } finally {
    signal.removeEventListener("abort", onAbort);
    reader.destroy();
    await cleanup();
  }
}
