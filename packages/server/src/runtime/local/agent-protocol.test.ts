// The agent protocol is written down once (proto/sbx/agent/v1/agent.proto): the server's types
// come from @sbx/proto/agent, the agent's Go structs from agent/protocol.gen.go, generated from
// the same descriptors. This fails when the committed Go file is stale; the agent's own Go
// tests (inotify decoding, paths, the JSON it writes) run here too.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const agentDir = new URL("../../../agent/", import.meta.url).pathname;

describe("the agent protocol", () => {
  it("agent/protocol.gen.go is what scripts/gen-agent-protocol.ts generates now (run `pnpm generate`)", async () => {
    const script = new URL("../../../scripts/gen-agent-protocol.ts", import.meta.url).href;
    const { generatedGo, GENERATED_GO } = (await import(/* @vite-ignore */ script)) as {
      generatedGo(): string;
      GENERATED_GO: string;
    };
    expect(generatedGo()).toBe(readFileSync(GENERATED_GO, "utf8"));
  });

  it("the agent's Go code is vetted and its tests pass", () => {
    const env = { ...process.env, CGO_ENABLED: "0", GOPROXY: "off", GOFLAGS: "-mod=mod -buildvcs=false" };
    execFileSync("go", ["vet", "./..."], { cwd: agentDir, env, stdio: "pipe" });
    const out = execFileSync("go", ["test", "-count=1", "./..."], { cwd: agentDir, env, encoding: "utf8" });
    expect(out).toMatch(/^ok\s/m);
  }, 300_000);
});
