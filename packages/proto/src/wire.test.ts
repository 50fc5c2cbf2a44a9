import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  create,
  type DescField,
  type DescFile,
  type DescMessage,
  fromBinary,
  ScalarType,
  toBinary,
} from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import * as pb from "./index.js";
import * as wire from "./wire.js";
import { decodeMessage, encodeMessage, methods } from "./wire.js";

// Every descriptor of the generated code: the codec must agree with protobuf-es on all of them.
const files = Object.values(pb)
  .filter((v): v is DescFile => typeof v === "object" && v !== null && (v as { kind?: unknown }).kind === "file")
  .sort((a, b) => (a.name < b.name ? -1 : 1));
const allMessages: DescMessage[] = [];
const visit = (m: DescMessage): void => {
  allMessages.push(m);
  m.nestedMessages.forEach(visit);
};
for (const file of files) file.messages.forEach(visit);
const allServices = files.flatMap((f) => f.services);
const byName = (d: DescMessage): [string, DescMessage] => [d.typeName, d];
const messageCases = allMessages.map(byName);

type Init = Record<string, unknown>;

/** mulberry32: a small seeded PRNG, so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function seedOf(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}

class Gen {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = rng(seed);
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(values: readonly T[]): T {
    return values[this.int(values.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  uint32(): number {
    return this.int(2 ** 32);
  }
  uint64(): bigint {
    return (BigInt(this.uint32()) << 32n) | BigInt(this.uint32());
  }
  /** Valid UTF-16 (no lone surrogates: those cannot round-trip through UTF-8). */
  string(): string {
    const special = [
      "",
      "a",
      "sbx",
      "héllo wörld",
      "✓ 🎉 日本語",
      "\uFEFFstarts with a BOM",
      "nul\0inside",
      "x".repeat(127),
      "x".repeat(128),
      "é".repeat(70),
      "__proto__",
    ];
    if (this.chance(0.5)) return this.pick(special);
    let s = "";
    const n = this.int(40);
    for (let i = 0; i < n; i++) {
      const kind = this.int(4);
      const cp =
        kind === 0
          ? 0x20 + this.int(0x5f)
          : kind === 1
            ? this.int(0x800)
            : kind === 2
              ? 0xe000 + this.int(0x2000)
              : 0x10000 + this.int(0x10ffff - 0x10000);
      s += String.fromCodePoint(cp);
    }
    return s;
  }
  bytes(): Uint8Array {
    if (this.chance(0.3)) return new Uint8Array(0);
    const b = new Uint8Array(this.chance(0.1) ? 200 + this.int(300) : this.int(20));
    for (let i = 0; i < b.length; i++) b[i] = this.int(256);
    return b;
  }
  scalar(type: ScalarType): unknown {
    switch (type) {
      case ScalarType.DOUBLE:
        return this.pick([
          0,
          -0,
          Number.NaN,
          Number.POSITIVE_INFINITY,
          Number.NEGATIVE_INFINITY,
          1,
          -1.5,
          0.1,
          Number.MAX_VALUE,
          -Number.MAX_VALUE,
          Number.MIN_VALUE,
          2 ** 53 + 2,
          (this.next() - 0.5) * 1e6,
        ]);
      case ScalarType.INT32:
        return this.pick([0, 1, -1, 127, 128, 300, 2 ** 31 - 1, -(2 ** 31), this.uint32() | 0]);
      case ScalarType.UINT32:
        return this.pick([0, 1, 127, 128, 16383, 16384, 2 ** 31, 2 ** 32 - 1, this.uint32()]);
      case ScalarType.INT64:
        return this.pick([
          0n,
          1n,
          -1n,
          128n,
          2n ** 53n + 1n,
          -(2n ** 53n) - 1n,
          2n ** 63n - 1n,
          -(2n ** 63n),
          BigInt.asIntN(64, this.uint64()),
        ]);
      case ScalarType.UINT64:
        return this.pick([0n, 1n, 127n, 128n, 2n ** 32n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n, this.uint64()]);
      case ScalarType.BOOL:
        return this.chance(0.5);
      case ScalarType.STRING:
        return this.string();
      case ScalarType.BYTES:
        return this.bytes();
      default:
        throw new Error(`test generator: unsupported scalar ${type}`);
    }
  }
  /** Another accepted input form of the same value: 64-bit integers as number or string. */
  loosen(type: ScalarType, value: unknown): unknown {
    if (typeof value !== "bigint" || (type !== ScalarType.INT64 && type !== ScalarType.UINT64)) return value;
    const n = this.int(3);
    if (n === 0 && value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)) {
      return Number(value);
    }
    return n === 1 ? value.toString() : value;
  }
  enumValue(field: DescField & { enum: NonNullable<DescField["enum"]> }): number {
    // Open enums keep unknown numbers, negative ones too (10-byte varints).
    return this.chance(0.2) ? this.pick([99, -1, 2 ** 31 - 1]) : this.pick(field.enum.values).number;
  }
  /** One value of a singular field, list item or map value: [for create(), for encodeMessage()]. */
  value(field: DescField, depth: number): [unknown, unknown] {
    const kind =
      field.fieldKind === "list" ? field.listKind : field.fieldKind === "map" ? field.mapKind : field.fieldKind;
    if (kind === "message") return this.message(field.message!, depth + 1);
    if (kind === "enum") {
      const v = this.enumValue(field as DescField & { enum: NonNullable<DescField["enum"]> });
      return [v, v];
    }
    const scalar = field.scalar!;
    const v = this.scalar(scalar);
    return [v, this.loosen(scalar, v)];
  }
  /** A random init for create() and an equivalent (looser) init for encodeMessage(). */
  message(desc: DescMessage, depth = 0): [Init, Init] {
    const canonical: Init = {};
    const loose: Init = {};
    if (this.chance(0.2)) loose.$typeName = "not.a.Type";
    if (this.chance(0.1)) loose.notAField = 1;
    for (const member of desc.members) {
      if (member.kind === "oneof") {
        const r = this.int(member.fields.length + 2);
        if (r >= member.fields.length) {
          if (r === member.fields.length) {
            canonical[member.localName] = { case: undefined };
            loose[member.localName] = { case: undefined };
          }
          continue;
        }
        const field = member.fields[r]!;
        const [c, l] = depth >= 3 && field.fieldKind === "message" ? [{}, {}] : this.value(field, depth);
        canonical[member.localName] = { case: field.localName, value: c };
        loose[member.localName] = { case: field.localName, value: l };
        continue;
      }
      const field = member;
      const name = field.localName;
      if (this.chance(0.3)) {
        // Absent: missing, undefined or null are all "not set".
        const how = this.int(3);
        if (how === 1) loose[name] = undefined;
        if (how === 2) loose[name] = null;
        continue;
      }
      switch (field.fieldKind) {
        case "message":
          if (depth >= 3) continue;
          [canonical[name], loose[name]] = this.value(field, depth);
          break;
        case "list": {
          const n =
            this.chance(0.2) || (field.listKind === "message" && depth >= 2)
              ? 0
              : field.listKind !== "message" && this.chance(0.1)
                ? 60
                : 1 + this.int(3);
          const c: unknown[] = [];
          const l: unknown[] = [];
          for (let i = 0; i < n; i++) {
            const [vc, vl] = this.value(field, depth);
            c.push(vc);
            l.push(vl);
          }
          canonical[name] = c;
          loose[name] = l;
          break;
        }
        case "map": {
          const c: Record<string, unknown> = {};
          const l: Record<string, unknown> = {};
          const n = this.chance(0.2) ? 0 : 1 + this.int(3);
          for (let i = 0; i < n; i++) {
            const key = this.chance(0.1) ? "" : this.string();
            if (key === "__proto__") continue; // covered by its own test
            [c[key], l[key]] = this.value(field, depth);
          }
          canonical[name] = c;
          loose[name] = l;
          break;
        }
        default: {
          // Scalars and enums: sometimes their zero value, explicitly.
          if (field.presence === 2 && this.chance(0.2)) {
            const zero = (create(desc) as unknown as Init)[name];
            canonical[name] = zero;
            loose[name] = zero;
            break;
          }
          [canonical[name], loose[name]] = this.value(field, depth);
        }
      }
    }
    return [canonical, loose];
  }
}

const ITERATIONS = 250;

/** Byte equality (fast), with vitest's diff when it fails. */
function expectBytes(actual: Uint8Array, expected: Uint8Array): void {
  if (!Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(expected)) {
    expect(actual).toStrictEqual(expected);
  }
  expect(actual).toBeInstanceOf(Uint8Array);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** protobuf-es's decoding, or the error it throws. */
function esDecode(desc: DescMessage, bytes: Uint8Array): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: fromBinary(desc, bytes, { readUnknownFields: false }) };
  } catch {
    return { ok: false };
  }
}

function expectSameAsProtobufEs(desc: DescMessage, bytes: Uint8Array): void {
  const es = esDecode(desc, bytes);
  if (es.ok) expect(decodeMessage(desc.typeName, bytes)).toStrictEqual(es.value);
  else expect(() => decodeMessage(desc.typeName, bytes)).toThrow(Error);
}

describe("encodeMessage agrees with protobuf-es create + toBinary", () => {
  it.each(messageCases)("%s", (name, desc) => {
    const gen = new Gen(seedOf(`encode ${name}`));
    for (let i = 0; i < ITERATIONS; i++) {
      const [canonical, loose] = gen.message(desc);
      const expected = create(desc, canonical);
      const bytes = toBinary(desc, expected);
      // Byte for byte (same field order, packing, length prefixes), from either input form.
      expectBytes(encodeMessage(name, loose), bytes);
      expectBytes(encodeMessage(name, canonical), bytes);
      expect(fromBinary(desc, encodeMessage(name, canonical))).toStrictEqual(expected);
    }
  });

  it.each(messageCases)("%s: empty init encodes to nothing", (name, desc) => {
    expect(encodeMessage(name, {})).toStrictEqual(new Uint8Array(0));
    expect(encodeMessage(name, create(desc))).toStrictEqual(new Uint8Array(0));
  });
});

describe("decodeMessage agrees with protobuf-es fromBinary", () => {
  it.each(messageCases)("%s", (name, desc) => {
    const gen = new Gen(seedOf(`decode ${name}`));
    for (let i = 0; i < ITERATIONS; i++) {
      const [canonical] = gen.message(desc);
      const message = create(desc, canonical);
      const bytes = toBinary(desc, message);
      const decoded = decodeMessage(name, bytes);
      expect(decoded).toStrictEqual(fromBinary(desc, bytes));
      expect(decoded).toStrictEqual(message);
    }
  });

  it.each(messageCases)("%s: empty input decodes to the zero message", (name, desc) => {
    expect(decodeMessage(name, new Uint8Array(0))).toStrictEqual(create(desc));
    expect(decodeMessage(name, new Uint8Array(0))).toStrictEqual(fromBinary(desc, new Uint8Array(0)));
  });

  it.each(messageCases)("%s: every oneof case", (name, desc) => {
    const gen = new Gen(seedOf(`oneof ${name}`));
    for (const oneof of desc.oneofs) {
      for (const field of oneof.fields) {
        for (let i = 0; i < 20; i++) {
          const [canonical, loose] = gen.message(desc);
          const [c, l] = gen.value(field, 0);
          canonical[oneof.localName] = { case: field.localName, value: c };
          loose[oneof.localName] = { case: field.localName, value: l };
          const message = create(desc, canonical);
          const bytes = toBinary(desc, message);
          expectBytes(encodeMessage(name, loose), bytes);
          expect(decodeMessage(name, bytes)).toStrictEqual(message);
        }
      }
    }
  });

  it.each(messageCases)(
    "%s: concatenated encodings merge like protobuf-es, unknown fields are skipped",
    (name, desc) => {
      const gen = new Gen(seedOf(`merge ${name}`));
      const used = new Set(desc.fields.map((f) => f.number));
      const unknownNumbers = [1000, 536870911, ...[1, 2, 3, 4, 5, 15, 16, 17].filter((n) => !used.has(n))];
      const unknown = (): Uint8Array => {
        const w = new BinaryWriter();
        const no = gen.pick(unknownNumbers);
        switch (gen.int(5)) {
          case 0:
            w.tag(no, WireType.Varint).uint64(gen.uint64());
            break;
          case 1:
            w.tag(no, WireType.Varint).int32(-1 - gen.int(1000)); // 10 bytes
            break;
          case 2:
            w.tag(no, WireType.Bit64).fixed64(gen.uint64());
            break;
          case 3:
            w.tag(no, WireType.LengthDelimited).bytes(gen.bytes());
            break;
          default:
            w.tag(no, WireType.Bit32).fixed32(gen.uint32());
        }
        return w.finish();
      };
      for (let i = 0; i < 100; i++) {
        const a = toBinary(desc, create(desc, gen.message(desc)[0]));
        const b = toBinary(desc, create(desc, gen.message(desc)[0]));
        const withUnknown = concat(unknown(), a, unknown(), unknown(), b, unknown());
        expect(decodeMessage(name, withUnknown)).toStrictEqual(
          fromBinary(desc, withUnknown, { readUnknownFields: false }),
        );
        expect(decodeMessage(name, withUnknown)).toStrictEqual(decodeMessage(name, concat(a, b)));
      }
    },
  );

  it.each(messageCases)("%s: every truncation throws exactly when protobuf-es does", (name, desc) => {
    const gen = new Gen(seedOf(`truncate ${name}`));
    let threw = 0;
    for (let i = 0; i < 30; i++) {
      const bytes = toBinary(desc, create(desc, gen.message(desc)[0]));
      // Every prefix of short encodings, a sample of long ones.
      const lengths = Array.from({ length: Math.min(bytes.length, 200) }, (_, n) =>
        bytes.length <= 200 ? n : gen.int(bytes.length),
      );
      for (const n of lengths) {
        const prefix = bytes.subarray(0, n);
        expectSameAsProtobufEs(desc, prefix);
        if (!esDecode(desc, prefix).ok) threw++;
      }
    }
    if (desc.fields.length > 0) expect(threw).toBeGreaterThan(0);
  });
});

describe("repeated scalars", () => {
  const packedFields = allMessages.flatMap((desc) =>
    desc.fields
      .filter((f) => f.fieldKind === "list" && f.listKind !== "message" && f.packed)
      .map((f) => [`${f}`, desc, f] as const),
  );

  it("covers the packed fields of the schema", () => {
    expect(packedFields.length).toBeGreaterThan(0);
  });

  it.each(packedFields)("%s decodes packed, unpacked and mixed encodings", (_, desc, field) => {
    const gen = new Gen(seedOf(`packed ${field}`));
    const scalar = field.fieldKind === "list" && field.listKind === "enum" ? ScalarType.INT32 : field.scalar;
    const write = (w: BinaryWriter, v: unknown): void => {
      if (scalar === ScalarType.INT32) w.int32(v as number);
      else if (scalar === ScalarType.UINT32) w.uint32(v as number);
      else if (scalar === ScalarType.UINT64) w.uint64(v as bigint);
      else if (scalar === ScalarType.INT64) w.int64(v as bigint);
      else if (scalar === ScalarType.BOOL) w.bool(v as boolean);
      else if (scalar === ScalarType.DOUBLE) w.double(v as number);
      else throw new Error(`test: add ${scalar}`);
    };
    const wireType = scalar === ScalarType.DOUBLE ? WireType.Bit64 : WireType.Varint;
    for (let i = 0; i < 50; i++) {
      const values = Array.from({ length: 1 + gen.int(8) }, () => gen.value(field, 0)[0]);
      const w = new BinaryWriter();
      let j = 0;
      while (j < values.length) {
        const run = 1 + gen.int(3);
        if (gen.chance(0.5)) {
          for (const v of values.slice(j, j + run)) {
            w.tag(field.number, wireType);
            write(w, v);
          }
        } else {
          w.tag(field.number, WireType.LengthDelimited).fork();
          for (const v of values.slice(j, j + run)) write(w, v);
          w.join();
        }
        j += run;
      }
      const bytes = w.finish();
      const decoded = decodeMessage<Record<string, unknown>>(desc.typeName, bytes);
      expect(decoded[field.localName]).toStrictEqual(values);
      expect(decoded).toStrictEqual(fromBinary(desc, bytes));
    }
  });

  it("writes packed fields packed (one length-delimited record)", () => {
    expect(encodeMessage("sbx.v1.SandboxSpec", { ports: [1, 300] })).toStrictEqual(
      new Uint8Array([0x72, 3, 1, 0xac, 2]),
    );
    expect(encodeMessage("sbx.v1.WatchRequest", { filter: [-1] })).toStrictEqual(
      new Uint8Array([0x22, 10, 255, 255, 255, 255, 255, 255, 255, 255, 255, 1]),
    );
  });
});

describe("edge cases", () => {
  it("maps keep a __proto__ key as an own entry, like protobuf-es", () => {
    const tags: Record<string, string> = {};
    Object.defineProperty(tags, "__proto__", { value: "p", enumerable: true, writable: true, configurable: true });
    tags.a = "b";
    const bytes = encodeMessage("sbx.v1.SetTagsRequest", { sandboxId: "s", tags });
    const desc = pb.SetTagsRequestSchema;
    expect(bytes).toStrictEqual(toBinary(desc, create(desc, { sandboxId: "s", tags })));
    const decoded = decodeMessage<{ tags: Record<string, string> }>("sbx.v1.SetTagsRequest", bytes);
    expect(Object.getPrototypeOf(decoded.tags)).toBe(Object.prototype);
    expect(Object.entries(decoded.tags)).toStrictEqual([
      ["__proto__", "p"],
      ["a", "b"],
    ]);
    expect(decoded).toStrictEqual(fromBinary(desc, bytes));
  });

  it("map entries without key or value get the defaults, later entries win", () => {
    // tags (2): {value "v"} (no key), {key "k"} (no value), {key "k", value "w"}, {key "x", value "1"} then {key "x"}
    const bytes = new Uint8Array([
      ...[0x12, 3, 0x12, 1, 0x76],
      ...[0x12, 3, 0x0a, 1, 0x6b],
      ...[0x12, 6, 0x0a, 1, 0x6b, 0x12, 1, 0x77],
      ...[0x12, 6, 0x0a, 1, 0x78, 0x12, 1, 0x31],
      ...[0x12, 3, 0x0a, 1, 0x78],
    ]);
    const decoded = decodeMessage("sbx.v1.SetTagsRequest", bytes);
    expect(decoded).toStrictEqual(fromBinary(pb.SetTagsRequestSchema, bytes));
    expect(decoded).toMatchObject({ tags: { "": "v", k: "w", x: "" } });
  });

  it("proto3 optional fields: absent stays absent, an explicit zero is written", () => {
    const none = decodeMessage<object>("sbx.v1.ProcessSpec", new Uint8Array(0));
    expect("idleTimeoutMs" in none).toBe(false);
    expect("ptySize" in none).toBe(false);
    const bytes = encodeMessage("sbx.v1.ProcessSpec", { idleTimeoutMs: 0n, ttlMs: "0" });
    expect(bytes).toStrictEqual(new Uint8Array([0x40, 0, 0x50, 0]));
    expect(decodeMessage("sbx.v1.ProcessSpec", bytes)).toMatchObject({ idleTimeoutMs: 0n, ttlMs: 0n });
  });

  it("64-bit integers: bigint, number and decimal string; out of range throws", () => {
    const big = 2n ** 64n - 1n;
    const bytes = encodeMessage("sbx.v1.RetryInfo", { retryDelayMs: big });
    expectBytes(encodeMessage("sbx.v1.RetryInfo", { retryDelayMs: big.toString() }), bytes);
    expect(decodeMessage("sbx.v1.RetryInfo", bytes)).toStrictEqual({
      $typeName: "sbx.v1.RetryInfo",
      retryDelayMs: big,
    });
    expect(encodeMessage("sbx.v1.FileInfo", { mtimeMs: -5 })).toStrictEqual(
      encodeMessage("sbx.v1.FileInfo", { mtimeMs: -5n }),
    );
    expect(() => encodeMessage("sbx.v1.RetryInfo", { retryDelayMs: -1n })).toThrow();
    expect(() => encodeMessage("sbx.v1.RetryInfo", { retryDelayMs: 2n ** 64n })).toThrow();
    expect(() => encodeMessage("sbx.v1.FileInfo", { mtimeMs: 2n ** 63n })).toThrow();
    expect(() => encodeMessage("sbx.v1.PtySize", { rows: -1 })).toThrow();
    expect(() => encodeMessage("sbx.v1.SignalProcessRequest", { signal: 1.5 })).toThrow();
  });

  it("invalid input throws", () => {
    const invalid = [
      [0x08], // varint cut
      [0x08, 0x80], // varint cut
      [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // 11-byte varint
      [0x0a, 5, 0x61], // string longer than the input
      [0x0a, 2, 0xc3, 0x28], // invalid UTF-8
      [0x00, 0x01], // field number 0
      [0xfb, 0x01, 0x00], // unknown field with wire type 3 (group)
      [0xfe, 0x01, 0x00], // wire type 6
      [0xf9, 0x01, 1, 2, 3], // unknown fixed64 cut
      [0xfd, 0x01, 1, 2], // unknown fixed32 cut
    ];
    for (const bytes of invalid) {
      expect(() => decodeMessage("sbx.v1.StatRequest", new Uint8Array(bytes)), String(bytes)).toThrow(Error);
      expect(() => fromBinary(pb.StatRequestSchema, new Uint8Array(bytes)), String(bytes)).toThrow();
    }
    // A nested message whose field overruns its length: protobuf-es reads on, the codec refuses.
    expect(() => decodeMessage("sbx.v1.StatResponse", new Uint8Array([0x0a, 2, 0x0a, 3, 0x61, 0x62, 0x63]))).toThrow();
    // Lengths beyond the input fail at once (no reading on through a huge claimed length).
    expect(() => decodeMessage("sbx.v1.SandboxSpec", new Uint8Array([0x72, 0xff, 0xff, 0xff, 0xff, 0x0f, 1]))).toThrow(
      Error,
    );
    expect(() => decodeMessage("sbx.v1.StatResponse", new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]))).toThrow(
      Error,
    );
    // A double cut short.
    expect(() => decodeMessage("sbx.v1.ResourceAmount", new Uint8Array([0x09, 0, 0, 0]))).toThrow(Error);
    expect(() => decodeMessage("sbx.v1.NoSuchMessage", new Uint8Array(0))).toThrow(/unknown message type/);
    expect(() => encodeMessage("sbx.v1.NoSuchMessage", {})).toThrow(/unknown message type/);
  });

  it("large nested messages get multi-byte length prefixes", () => {
    const desc = pb.CreateSandboxRequestSchema;
    for (const n of [100, 127, 128, 16383, 16384, 70000]) {
      const init = { spec: { image: "i".repeat(n), env: { K: "v".repeat(n) }, cpu: { cores: { request: 1 } } } };
      const bytes = toBinary(desc, create(desc, init));
      expectBytes(encodeMessage(desc.typeName, init), bytes);
      expect(decodeMessage(desc.typeName, bytes)).toStrictEqual(fromBinary(desc, bytes));
    }
  });

  it("bytes fields decode as views of the input, like protobuf-es", () => {
    const bytes = encodeMessage("sbx.v1.ReadOutputResponse", {
      offset: 3n,
      data: new Uint8Array([1, 2, 3]),
      eof: true,
    });
    const decoded = decodeMessage<{ data: Uint8Array }>("sbx.v1.ReadOutputResponse", bytes);
    expect(decoded.data.buffer).toBe(bytes.buffer);
    expect(fromBinary(pb.ReadOutputResponseSchema, bytes).data.buffer).toBe(bytes.buffer);
  });
});

describe("methods", () => {
  it.each(allServices.map((s) => [s.typeName, s] as const))("%s", (name, service) => {
    // Bidirectional streams (OpenTunnel) are left out: fetch cannot carry them.
    const expected = Object.fromEntries(
      service.methods
        .filter((m) => m.methodKind !== "bidi_streaming")
        .map((m) => [
          m.localName,
          {
            path: `/${service.typeName}/${m.name}`,
            input: m.input.typeName,
            output: m.output.typeName,
            streaming: m.methodKind === "server_streaming",
          },
        ]),
    );
    expect(methods(name)).toStrictEqual(expected);
  });

  it("spot check and unknown service", () => {
    expect(methods("sbx.v1.ProcessService").readOutput).toStrictEqual({
      path: "/sbx.v1.ProcessService/ReadOutput",
      input: "sbx.v1.ReadOutputRequest",
      output: "sbx.v1.ReadOutputResponse",
      streaming: true,
    });
    expect(() => methods("sbx.v1.NoSuchService")).toThrow(/unknown service/);
  });
});

describe("generated table", () => {
  it("src/gen/wire-schema.ts is what scripts/gen-wire.ts generates now (run `pnpm generate`)", async () => {
    // A computed specifier: the script is outside this package's TypeScript program.
    const script = new URL("../scripts/gen-wire.ts", import.meta.url).href;
    const { generateWireSchema, generateWireEnums } = (await import(/* @vite-ignore */ script)) as {
      generateWireSchema(files: readonly DescFile[]): string;
      generateWireEnums(files: readonly DescFile[]): string;
    };
    const checkedIn = readFileSync(fileURLToPath(new URL("./gen/wire-schema.ts", import.meta.url)), "utf8");
    expect(generateWireSchema(files)).toBe(checkedIn);
    const enums = readFileSync(fileURLToPath(new URL("./gen/wire-enums.ts", import.meta.url)), "utf8");
    expect(generateWireEnums(files), "src/gen/wire-enums.ts").toBe(enums);
  });

  it("has every enum of the generated code, with the same values", () => {
    const enums = files.flatMap((f) => f.enums);
    expect(enums.length).toBeGreaterThan(0);
    for (const e of enums) {
      const generated = (pb as unknown as Record<string, Record<string, unknown>>)[e.name]!;
      const forward = Object.fromEntries(Object.entries(generated).filter(([name]) => Number.isNaN(Number(name))));
      expect((wire as unknown as Record<string, unknown>)[e.name], e.typeName).toStrictEqual(forward);
    }
  });

  it("the codec and its table import nothing from protobuf-es at runtime", () => {
    for (const file of ["./wire.ts", "./gen/wire-schema.ts", "./gen/wire-enums.ts"]) {
      const text = readFileSync(fileURLToPath(new URL(file, import.meta.url)), "utf8");
      const imports = [...text.matchAll(/^import\s+(type\s+)?[^;]*?from\s+"([^"]+)"/gm)];
      for (const [statement, typeOnly, from] of imports) {
        if (!typeOnly) expect(from, statement).toMatch(/^\.\.?\//);
      }
    }
  });
});
