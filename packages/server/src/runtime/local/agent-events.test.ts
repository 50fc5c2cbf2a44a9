import { describe, expect, it } from "vitest";
import { EventLines, MAX_EVENT_LINE, parseAgentEvent } from "./agent-events.js";

describe("agent events (untrusted input)", () => {
  it("accepts well-formed events and drops anything else without throwing", () => {
    expect(parseAgentEvent('{"id":"1","started":{"pid":7}}')).toEqual({ id: "1", started: { pid: 7 } });
    expect(parseAgentEvent('{"id":"1","exited":{"signal":9}}')).toEqual({ id: "1", exited: { signal: 9 } });
    expect(parseAgentEvent('{"id":"c2","file":{"error":{"kind":"FILE_ERROR_KIND_NOT_FOUND","message":"m"}}}')).toEqual({
      id: "c2",
      file: { error: { kind: "FILE_ERROR_KIND_NOT_FOUND", message: "m" } },
    });
    expect(
      parseAgentEvent('{"id":"w1","watch":{"events":[{"type":"WATCH_EVENT_TYPE_CREATE","paths":["/a"]}]}}'),
    ).toEqual({ id: "w1", watch: { events: [{ type: "WATCH_EVENT_TYPE_CREATE", paths: ["/a"] }] } });
    for (const bad of [
      "not json{",
      "null",
      "[]",
      '"ready"',
      '{"ev":"ready"}',
      '{"id":1,"started":{"pid":7}}',
      '{"id":"1","started":{"pid":"7"}}',
      '{"id":"1","exited":{"code":0,"signal":9}}',
      '{"id":"1","started":{"pid":7},"exited":{"code":0}}',
      '{"id":"c1","file":{"error":"x"}}',
      '{"id":"c1","file":{"error":{"kind":"bogus"}}}',
      '{"id":"w1","watch":{"events":[{"type":"explode","paths":["/a"]}]}}',
      '{"id":"w1","watch":{"events":[{"type":"WATCH_EVENT_TYPE_CREATE","paths":[1]}]}}',
      '{"id":"w1","watch":{"events":{}}}',
      '{"__proto__":{}}',
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
    expect(lines.push('tail\n{"ready":{}}\n')).toEqual(['{"ready":{}}']);
  });
});
