import { describe, expect, it } from "vitest";
import { EventLines, MAX_EVENT_LINE, parseAgentEvent } from "./agent-events.js";

describe("agent events (untrusted input)", () => {
  it("accepts well-formed events and drops anything else without throwing", () => {
    expect(parseAgentEvent('{"ev":"started","id":"1","pid":7}')).toEqual({ ev: "started", id: "1", pid: 7 });
    expect(parseAgentEvent('{"ev":"exited","id":"1","signal":9}')).toEqual({ ev: "exited", id: "1", signal: 9 });
    expect(parseAgentEvent('{"ev":"fs","id":"c2","error":{"kind":"bogus","message":"m"}}')).toEqual({
      ev: "fs",
      id: "c2",
      error: { kind: "other", message: "m" },
    });
    expect(parseAgentEvent('{"ev":"watch","id":"w1","events":[{"type":"create","paths":["/a"]}]}')).toEqual({
      ev: "watch",
      id: "w1",
      events: [{ type: "create", paths: ["/a"] }],
    });
    for (const bad of [
      "not json{",
      "null",
      "[]",
      '"ready"',
      '{"ev":1}',
      '{"ev":"started","id":1,"pid":7}',
      '{"ev":"started","id":"1","pid":"7"}',
      '{"ev":"exited","id":"1"}',
      '{"ev":"fs","id":"c1","error":"x"}',
      '{"ev":"watch","id":"w1","events":[{"type":"explode","paths":["/a"]}]}',
      '{"ev":"watch","id":"w1","events":[{"type":"create","paths":[1]}]}',
      '{"ev":"watch","id":"w1","events":{}}',
      '{"ev":"__proto__"}',
    ]) {
      expect(parseAgentEvent(bad), bad).toBeUndefined();
    }
  });

  it("splits lines across pushes and drops a line longer than the limit whole", () => {
    const lines = new EventLines();
    expect(lines.push('{"a":')).toEqual([]);
    expect(lines.push('1}\n{"b":2}\n{"c"')).toEqual(['{"a":1}', '{"b":2}']);
    expect(lines.push(":3}\n")).toEqual(['{"c":3}']);
    const huge = "x".repeat(MAX_EVENT_LINE / 4);
    for (let i = 0; i < 5; i++) expect(lines.push(huge)).toEqual([]);
    // The rest of the over-long line is skipped; the next line is whole.
    expect(lines.push('tail\n{"ev":"ready"}\n')).toEqual(['{"ev":"ready"}']);
  });
});
