import { describe, expect, it } from "vitest";
import { hostPlatform } from "./platform.js";

describe("hostPlatform", () => {
  it("is linux and this machine's architecture, in GOARCH names", () => {
    expect(hostPlatform().os).toBe("linux");
    expect(["amd64", "arm64"]).toContain(hostPlatform().architecture);
  });
});
