import { describe, expect, it } from "vitest";
import { InvalidError } from "./errors.js";
import { processSpecOf, signalNumber } from "./process-ops.js";
import { sandboxSpecOf } from "./sandbox-ops.js";
import {
  ARG_MAX_BYTES,
  utf8Length,
  validateArgv,
  validateDuration,
  validateEnv,
  validateName,
  validateResource,
  validateTags,
} from "./validation.js";

describe("validateArgv", () => {
  it("accepts strings up to ARG_MAX_BYTES UTF-8 bytes in total", () => {
    expect(validateArgv(["a".repeat(ARG_MAX_BYTES - 1), "b"])).toHaveLength(2);
  });
  it("counts bytes, not characters", () => {
    const twoByte = "é".repeat(ARG_MAX_BYTES / 2);
    expect(utf8Length(twoByte)).toBe(ARG_MAX_BYTES);
    expect(() => validateArgv([twoByte])).not.toThrow();
    expect(() => validateArgv([twoByte, "x"])).toThrow(InvalidError);
    expect(() => validateArgv(["😀".repeat(ARG_MAX_BYTES / 4 + 1)])).toThrow(/ARG_MAX_BYTES/);
  });
  it("rejects non-strings, empty and non-arrays", () => {
    expect(() => validateArgv(["echo", 1 as unknown as string])).toThrow(/command\[1\] must be a string/);
    expect(() => validateArgv([])).toThrow(InvalidError);
    expect(() => validateArgv("echo hi")).toThrow(InvalidError);
  });
});

describe("names, durations, tags, env, resources", () => {
  it("names", () => {
    for (const ok of ["a", "my-box_1.2", "A".repeat(64)]) expect(validateName(ok)).toBe(ok);
    for (const bad of ["", "has space", "../x", "-lead", "A".repeat(65), "é"]) {
      expect(() => validateName(bad)).toThrow(InvalidError);
    }
  });
  it("durations", () => {
    expect(validateDuration(1.6, "t")).toBe(2);
    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY, "5"]) {
      expect(() => validateDuration(bad, "timeoutMs")).toThrow(/timeoutMs/);
    }
    expect(() => validateDuration(11, "t", 10)).toThrow(/at most 10/);
  });
  it("tags", () => {
    expect(validateTags({ a: "b" })).toEqual({ a: "b" });
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, "v"]));
    expect(() => validateTags(many)).toThrow(/at most 64/);
    expect(() => validateTags({ ["k".repeat(64)]: "v" })).toThrow(InvalidError);
    expect(() => validateTags({ k: "v".repeat(256) })).toThrow(InvalidError);
    expect(() => validateTags({ k: 1 })).toThrow(InvalidError);
  });
  it("env", () => {
    expect(() => validateEnv({ "A=B": "x" })).toThrow(InvalidError);
    expect(() => validateEnv({ A: 1 })).toThrow(InvalidError);
    expect(validateEnv({ A: "1" })).toEqual({ A: "1" });
  });
  it("resources", () => {
    expect(validateResource(2, "cpu")).toEqual({ request: 2, limit: 2 });
    expect(validateResource({ request: 1, limit: 2 }, "cpu")).toEqual({ request: 1, limit: 2 });
    expect(() => validateResource({ request: 3, limit: 2 }, "cpu")).toThrow(InvalidError);
    expect(() => validateResource(0, "memoryMiB")).toThrow(InvalidError);
  });
});

describe("sandbox and process specs", () => {
  it("builds a sandbox spec with defaults", () => {
    const spec = sandboxSpecOf({ name: "box", timeoutMs: 1000, tags: { t: "1" }, cpu: 0.5 });
    expect(spec.app).toBe("default");
    expect(spec.name).toBe("box");
    expect(spec.timeoutMs).toBe(1000n);
    expect(spec.cpu?.cores?.limit).toBe(0.5);
  });
  it("rejects relative workdirs, bad timeouts and ports", () => {
    expect(() => sandboxSpecOf({ workdir: "tmp" })).toThrow(/absolute/);
    expect(() => sandboxSpecOf({ timeoutMs: -5 })).toThrow(InvalidError);
    expect(() => sandboxSpecOf({ timeoutMs: 0 })).toThrow(InvalidError);
    expect(() => sandboxSpecOf({ timeoutMs: 86_400_001 })).toThrow(InvalidError);
    expect(() => sandboxSpecOf({ ports: [70000] })).toThrow(InvalidError);
  });
  it("passes diskMiB as a positive whole number, and rejects anything else before a request", () => {
    expect(sandboxSpecOf({}).diskMib).toBe(0); // the server's default
    expect(sandboxSpecOf({ diskMiB: 512 }).diskMib).toBe(512);
    for (const diskMiB of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 32, "512" as unknown as number]) {
      expect(() => sandboxSpecOf({ diskMiB }), String(diskMiB)).toThrow(InvalidError);
    }
  });
  it("builds a process spec", () => {
    const spec = processSpecOf(["ls"], { stderr: "stdout", workdir: "/tmp", timeoutMs: 5 });
    expect(spec.stderr).toBe(3);
    expect(spec.timeoutMs).toBe(5n);
    expect(() => processSpecOf(["ls"], { stdout: "file" as "pipe" })).toThrow(InvalidError);
    expect(() => processSpecOf(["ls"], { mode: "utf16" as "text" })).toThrow(InvalidError);
  });
  it("maps signal names", () => {
    expect(signalNumber(undefined)).toBe(9);
    expect(signalNumber("SIGTERM")).toBe(15);
    expect(signalNumber(2)).toBe(2);
    expect(() => signalNumber("SIGFOO" as "SIGTERM")).toThrow(InvalidError);
    expect(() => signalNumber(0)).toThrow(InvalidError);
  });
});
