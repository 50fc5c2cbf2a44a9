import { create, type DescField, type DescMessage, ScalarType, toJson } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import * as agent from "./agent.js";
import { EventSchema, FileInfoSchema, isMessageJson, RequestSchema } from "./agent.js";

const file = agent.file_sbx_agent_v1_agent;
const messages: DescMessage[] = [];
const visit = (m: DescMessage): void => {
  messages.push(m);
  m.nestedMessages.forEach(visit);
};
file.messages.forEach(visit);

/** A value for every field (the first member of each oneof), non-default where it can be. */
function filled(desc: DescMessage, depth = 0): Record<string, unknown> {
  const init: Record<string, unknown> = {};
  const scalar = (type: ScalarType): unknown => {
    switch (type) {
      case ScalarType.STRING:
        return "x\n\u00e9";
      case ScalarType.BOOL:
        return true;
      case ScalarType.INT64:
        return -(2n ** 62n);
      case ScalarType.UINT64:
        return 2n ** 64n - 1n;
      case ScalarType.INT32:
        return -7;
      case ScalarType.UINT32:
        return 2 ** 32 - 1;
      default:
        throw new Error(`no sample for scalar ${type}`);
    }
  };
  const sample = (field: DescField): unknown => {
    switch (field.fieldKind) {
      case "scalar":
        return scalar(field.scalar);
      case "enum":
        return field.enum.values.at(-1)!.number;
      case "message":
        return depth < 3 ? create(field.message, filled(field.message, depth + 1)) : undefined;
      case "list":
        if (field.listKind === "message") return [create(field.message, filled(field.message, depth + 1))];
        if (field.listKind === "enum") return [1];
        return [scalar(field.scalar), scalar(field.scalar)];
      case "map":
        return { a: "1", "": "" };
    }
  };
  for (const member of desc.members) {
    if (member.kind === "oneof") {
      const first = member.fields[0]!;
      init[member.localName] = { case: first.localName, value: sample(first) };
    } else {
      init[member.localName] = sample(member);
    }
  }
  return init;
}

describe("isMessageJson", () => {
  it.each(messages.map((m) => [m.typeName, m] as const))("accepts protobuf-es's JSON of %s", (_, desc) => {
    expect(isMessageJson(desc, toJson(desc, create(desc, filled(desc))))).toBe(true);
    expect(isMessageJson(desc, toJson(desc, create(desc)))).toBe(true);
    expect(isMessageJson(desc, JSON.parse(JSON.stringify(toJson(desc, create(desc, filled(desc))))))).toBe(true);
  });

  it("accepts each member of a oneof alone, never two", () => {
    expect(isMessageJson(EventSchema, { id: "1", exited: { code: 0 } })).toBe(true);
    expect(isMessageJson(EventSchema, { id: "1", exited: { signal: 9 } })).toBe(true);
    expect(isMessageJson(EventSchema, { id: "1", exited: { code: 0, signal: 9 } })).toBe(false);
    expect(isMessageJson(EventSchema, { ready: {}, started: { pid: 3 } })).toBe(false);
  });

  it.each([
    ["a non-object", []],
    ["null", null],
    ["an unknown field", { id: "1", bogus: 1 }],
    ["a proto field name instead of the JSON name", { id: "1", file: { info: { mtime_ms: "1" } } }],
    ["a null field", { id: null }],
    ["a string where a message goes", { started: "1" }],
    ["a fractional int32", { started: { pid: 1.5 } }],
    ["an int32 out of range", { started: { pid: 2 ** 31 } }],
    ["an int32 as a string", { started: { pid: "1" } }],
    ["an int64 as a number", { file: { info: { size: 5 } } }],
    ["an int64 out of range", { file: { info: { size: "9223372036854775808" } } }],
    ["a uint64 below zero", { file: { opened: { dev: "-1" } } }],
    ["a uint64 with a sign", { file: { opened: { ino: "+1" } } }],
    ["an unknown enum name", { file: { info: { type: "FILE_TYPE_FIFO" } } }],
    ["an enum by number", { file: { info: { type: 1 } } }],
    ["a list that is not an array", { watch: { events: {} } }],
    ["a bad list element", { watch: { events: [{ type: "WATCH_EVENT_TYPE_CREATE", paths: [1] }] } }],
  ])("refuses %s", (_, value) => {
    expect(isMessageJson(EventSchema, value)).toBe(false);
  });

  it("checks maps and nested messages of requests", () => {
    expect(isMessageJson(RequestSchema, { id: "1", exec: { argv: ["ls"], env: { A: "b" }, pty: { rows: 1 } } })).toBe(
      true,
    );
    expect(isMessageJson(RequestSchema, { exec: { env: { A: 1 } } })).toBe(false);
    expect(isMessageJson(RequestSchema, { exec: { pty: { rows: -1 } } })).toBe(false);
    expect(isMessageJson(FileInfoSchema, { mode: 420, size: "0" })).toBe(true);
  });
});
