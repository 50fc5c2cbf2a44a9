import { describe, expect, it } from "vitest";
import {
  formatImageReference,
  ImageReferenceError,
  imageReferenceProblem,
  isLoopbackRegistry,
  parseImageReference,
} from "./image-reference.js";

const SHA = `sha256:${"ab".repeat(32)}`;

describe("parseImageReference", () => {
  it.each([
    ["python", "docker.io/library/python:latest"],
    ["python:3.12-slim", "docker.io/library/python:3.12-slim"],
    ["library/python:3.12", "docker.io/library/python:3.12"],
    ["index.docker.io/python", "docker.io/library/python:latest"],
    ["docker.io/org/app:v1", "docker.io/org/app:v1"],
    ["ghcr.io/org/team/app:1.0", "ghcr.io/org/team/app:1.0"],
    ["127.0.0.1:5000/x:1", "127.0.0.1:5000/x:1"],
    ["localhost:5000/a/b", "localhost:5000/a/b:latest"],
    ["localhost/a", "localhost/a:latest"],
    ["[::1]:5000/a", "[::1]:5000/a:latest"],
    [`host:5000/x@${SHA}`, `host:5000/x@${SHA}`],
    [`python:3.12@${SHA}`, `docker.io/library/python:3.12@${SHA}`],
    ["org/a.b_c__d--e", "docker.io/org/a.b_c__d--e:latest"],
  ])("%s → %s", (text, canonical) => {
    expect(formatImageReference(parseImageReference(text))).toBe(canonical);
  });

  it("splits registry, repository, tag and digest", () => {
    expect(parseImageReference(`reg.example:443/org/app:v2@${SHA}`)).toEqual({
      registry: "reg.example:443",
      repository: "org/app",
      tag: "v2",
      digest: SHA,
    });
    expect(parseImageReference(`x@${SHA}`).tag).toBeUndefined();
  });

  it.each([
    ["", "empty"],
    [" python", "whitespace"],
    ["py thon", "whitespace"],
    ["Python", "repository component"],
    ["python:", "tag"],
    ["python:-x", "tag"],
    [`python:${"a".repeat(129)}`, "tag"],
    ["python@sha256:abc", "digest"],
    [`python@md5:${"a".repeat(32)}`, "digest"],
    ["a//b", "repository component"],
    ["a/", "repository component"],
    ["/a", "repository component"],
    ["a..b", "repository component"],
    ["host:99999/a", "port"],
    ["host:port/a", "port"],
    ["-bad.host/a", "host name"],
    ["[zz]:1/a", "IPv6"],
    [`${"a".repeat(256)}`, "longer than 255"],
    ["a\nb", "control"],
  ])("refuses %j (%s)", (text, why) => {
    expect(() => parseImageReference(text)).toThrow(ImageReferenceError);
    expect(imageReferenceProblem(text)).toContain(why);
  });

  it("refuses what is not a string", () => {
    expect(imageReferenceProblem(42)).toContain("must be a string");
  });

  it("knows loopback registries", () => {
    expect(isLoopbackRegistry("127.0.0.1:5000")).toBe(true);
    expect(isLoopbackRegistry("127.1.2.3")).toBe(true);
    expect(isLoopbackRegistry("localhost:5000")).toBe(true);
    expect(isLoopbackRegistry("[::1]:5000")).toBe(true);
    expect(isLoopbackRegistry("127.0.0.1.example.com")).toBe(false);
    expect(isLoopbackRegistry("docker.io")).toBe(false);
    expect(isLoopbackRegistry("10.0.0.1:5000")).toBe(false);
  });
});
