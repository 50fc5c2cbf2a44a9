import { createFakeServer } from "@sbx/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AuthenticationError, ConnectionError, InvalidError, SandboxClient } from "./index.js";

describe("@sbx/node SandboxClient", () => {
  const saved = { ...process.env };
  beforeEach(() => {
    delete process.env.SBX_ENDPOINT;
    delete process.env.SBX_TOKEN;
  });
  afterEach(() => {
    process.env = { ...saved };
  });

  it("reads SBX_ENDPOINT and SBX_TOKEN", async () => {
    const fake = createFakeServer({ token: "s3cret" });
    const { url, close } = await fake.listen();
    try {
      process.env.SBX_ENDPOINT = url;
      process.env.SBX_TOKEN = "s3cret";
      await using client = new SandboxClient();
      expect(client.endpoint).toBe(url);
      const sb = await client.sandboxes.create();
      await sb.terminate();
    } finally {
      await close();
      await fake.close();
    }
  });

  it("defaults to http://127.0.0.1:7420", async () => {
    await using client = new SandboxClient();
    expect(client.endpoint).toBe("http://127.0.0.1:7420");
  });

  it("a wrong token is an AuthenticationError, not retried", async () => {
    const fake = createFakeServer({ token: "right" });
    const { url, close } = await fake.listen();
    try {
      await using client = new SandboxClient({ endpoint: url, token: "wrong" });
      await expect(client.sandboxes.create()).rejects.toBeInstanceOf(AuthenticationError);
      expect(fake.calls.filter((c) => c.method === "CreateSandbox")).toHaveLength(1);
    } finally {
      await close();
      await fake.close();
    }
  });

  it("an unreachable server ends in ConnectionError after retries", async () => {
    await using client = new SandboxClient({ endpoint: "http://127.0.0.1:9", maxRetries: 2, httpVersion: "1.1" });
    await expect(client.sandboxes.fromId("sb-x")).rejects.toBeInstanceOf(ConnectionError);
  });

  it("rejects a malformed endpoint", () => {
    expect(() => new SandboxClient({ endpoint: "not a url" })).toThrow(InvalidError);
  });
});
