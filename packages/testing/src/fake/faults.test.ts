// failNext's method names are typed: a misspelt one does not compile (checked by `tsc`: each
// expected-error directive below fails the typecheck if its name were accepted), and untyped
// callers still get a TypeError at run time. Every spelling that worked before still does.
import { SandboxClient } from "@sbx/core";
import { describe, expect, it } from "vitest";
import { createFakeServer, type FaultMethod, type RpcMethodName } from "../index.js";

describe("failNext method names", () => {
  it("accept wire names, lowerCamelCase names and the short aliases", () => {
    const fake = createFakeServer();
    const accepted: FaultMethod[] = [
      "CreateSandbox",
      "createSandbox",
      "StartProcess",
      "startProcess",
      "WriteFile",
      "writeFile",
      "Stat",
      "stat",
      "create",
      "exec",
      "read",
      "write",
      "waitProcess",
      "signal",
      "setTags",
    ];
    for (const method of accepted) expect(() => fake.failNext(method, { code: "unavailable" })).not.toThrow();
    fake.clearFaults();
  });

  it("reject misspelt names at compile time, and at run time for untyped callers", () => {
    const fake = createFakeServer();
    // @ts-expect-error: "StartProces" is misspelt
    expect(() => fake.failNext("StartProces", { code: "unavailable" })).toThrow(/unknown method "StartProces"/);
    // @ts-expect-error: aliases are lowerCamelCase only
    expect(() => fake.failNext("Exec", { code: "unavailable" })).toThrow(TypeError);
    // @ts-expect-error: not a method of the sbx services
    expect(() => fake.failNext("toString", { code: "unavailable" })).toThrow(TypeError);
    // @ts-expect-error: an arbitrary string is not a method name
    const untyped: FaultMethod = "anything" as string;
    expect(() => fake.failNext(untyped, { code: "unavailable" })).toThrow(TypeError);
  });

  it("the call log names methods by their wire names", async () => {
    const fake = createFakeServer();
    fake.failNext("create", { code: "unavailable" });
    const client = new SandboxClient({ transport: fake.transport });
    await client.sandboxes.create({});
    const methods: RpcMethodName[] = fake.calls.map((call) => call.method);
    expect(methods.filter((m) => m === "CreateSandbox").length).toBeGreaterThanOrEqual(2);
    await client.close();
    await fake.close();
  });
});
