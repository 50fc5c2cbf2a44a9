/**
 * Reading the agent's event pipe. Code inside the sandbox runs as the same user as the agent
 * and could write to that pipe too, so every line is untrusted: each must be an Event of the
 * agent protocol (proto/sbx/agent/v1/agent.proto, checked against its schema), anything else
 * is dropped (never thrown — one bad line must not take the server down), and a line may not
 * grow without bound.
 */
import { type EventJson, EventSchema, isMessageJson } from "@sbx/proto/agent";

export type { EventJson as AgentEvent };

/** Longest event line accepted (a directory listing of ~100k entries fits). */
export const MAX_EVENT_LINE = 32 * 1024 * 1024;

/** The event on `line`, or undefined when it is not a well-formed agent event. */
export function parseAgentEvent(line: string): EventJson | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  return isMessageJson(EventSchema, value) ? value : undefined;
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
