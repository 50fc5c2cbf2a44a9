/**
 * Reading the agent's event pipe. Code inside the sandbox runs as the same user as the agent
 * and can write to that pipe too, so every line is untrusted: anything malformed is dropped
 * (never thrown — one bad line must not take the server down), and a line may not grow
 * without bound.
 */
import type { RuntimeFsErrorKind, RuntimeWatchEvent } from "@sbx/server-kit";

export type AgentEvent =
  | { ev: "ready" }
  | { ev: "started"; id: string; pid: number }
  | { ev: "exited"; id: string; code?: number; signal?: number }
  | { ev: "failed"; id: string; error: string }
  | { ev: "error"; error: string }
  | { ev: "fs"; id: string; result?: unknown; error?: { kind: RuntimeFsErrorKind; message: string } }
  | { ev: "watch"; id: string; events: RuntimeWatchEvent[] };

/** Longest event line accepted (a directory listing of ~100k entries fits). */
export const MAX_EVENT_LINE = 32 * 1024 * 1024;

const FS_KINDS = new Set([
  "not_found",
  "is_a_directory",
  "not_a_directory",
  "directory_not_empty",
  "already_exists",
  "permission_denied",
  "no_space",
  "other",
]);
const WATCH_TYPES = new Set(["create", "modify", "delete", "rename", "overflow"]);

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const isInt = (v: unknown): v is number => Number.isSafeInteger(v);

/** The event on `line`, or undefined when it is not a well-formed agent event. */
export function parseAgentEvent(line: string): AgentEvent | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (!isRecord(value) || typeof value.ev !== "string") return undefined;
  const id = value.id;
  switch (value.ev) {
    case "ready":
      return { ev: "ready" };
    case "started":
      return typeof id === "string" && isInt(value.pid) ? { ev: "started", id, pid: value.pid } : undefined;
    case "exited": {
      if (typeof id !== "string") return undefined;
      if (isInt(value.signal)) return { ev: "exited", id, signal: value.signal };
      return isInt(value.code) ? { ev: "exited", id, code: value.code } : undefined;
    }
    case "failed":
      return typeof id === "string" ? { ev: "failed", id, error: String(value.error) } : undefined;
    case "error":
      return { ev: "error", error: String(value.error) };
    case "fs": {
      if (typeof id !== "string") return undefined;
      if (value.error === undefined) return { ev: "fs", id, result: value.result };
      const error = value.error;
      if (!isRecord(error)) return undefined;
      const kind = FS_KINDS.has(String(error.kind)) ? (error.kind as RuntimeFsErrorKind) : "other";
      return { ev: "fs", id, error: { kind, message: String(error.message) } };
    }
    case "watch": {
      if (typeof id !== "string" || !Array.isArray(value.events)) return undefined;
      const events: RuntimeWatchEvent[] = [];
      for (const e of value.events) {
        if (!isRecord(e) || !WATCH_TYPES.has(String(e.type)) || !Array.isArray(e.paths)) return undefined;
        if (!e.paths.every((p) => typeof p === "string")) return undefined;
        events.push({ type: e.type as RuntimeWatchEvent["type"], paths: e.paths as string[] });
      }
      return { ev: "watch", id, events };
    }
    default:
      return undefined;
  }
}

/** Splits the pipe's text into lines; a line longer than MAX_EVENT_LINE is dropped whole. */
export class EventLines {
  #buffer = "";
  #skipping = false;

  /** The complete lines in `text` (with what came before). */
  push(text: string): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let nl = text.indexOf("\n"); nl !== -1; nl = text.indexOf("\n", start)) {
      const piece = text.slice(start, nl);
      if (!this.#skipping) lines.push(this.#buffer + piece);
      this.#buffer = "";
      this.#skipping = false;
      start = nl + 1;
    }
    if (!this.#skipping) {
      this.#buffer += text.slice(start);
      if (this.#buffer.length > MAX_EVENT_LINE) {
        this.#buffer = "";
        this.#skipping = true;
      }
    }
    return lines;
  }
}
