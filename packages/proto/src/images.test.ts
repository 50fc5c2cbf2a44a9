import { describe, expect, it } from "vitest";
import {
  credentialsProblem,
  DEFAULT_IMAGE_ID,
  imageIdProblem,
  imageSelectorProblem,
  isImageDigest,
  isImageId,
} from "./images.js";

const SHA = `sha256:${"ab".repeat(32)}`;

describe("image ids and selectors", () => {
  it("knows an image id from a reference", () => {
    expect(isImageId(DEFAULT_IMAGE_ID)).toBe(true);
    expect(isImageId(`im-${"0a".repeat(10)}`)).toBe(true);
    for (const not of ["im-", "im-ABCDEF0123456789abcd", `im-${"0".repeat(21)}`, "python", "im-defaults"]) {
      expect(isImageId(not), not).toBe(false);
    }
    expect(imageIdProblem("python")).toContain('invalid image id "python"');
    expect(imageIdProblem(DEFAULT_IMAGE_ID)).toBeUndefined();
  });

  it("takes an id, a digest or a reference as a selector, and says what is wrong otherwise", () => {
    expect(isImageDigest(SHA)).toBe(true);
    for (const ok of [DEFAULT_IMAGE_ID, SHA, "python:3.12-slim", `127.0.0.1:5000/x@${SHA}`]) {
      expect(imageSelectorProblem(ok), ok).toBeUndefined();
    }
    expect(imageSelectorProblem("Python")).toContain("invalid image reference");
    expect(imageSelectorProblem("")).toContain("it is empty");
    expect(imageSelectorProblem(42)).toContain("it must be a string");
  });
});

describe("credentialsProblem", () => {
  it("takes { username, password } and nothing else, never echoing them", () => {
    expect(credentialsProblem(undefined)).toBeUndefined();
    expect(credentialsProblem({ username: "u", password: "" })).toBeUndefined();
    for (const bad of [
      null,
      "u:p",
      { username: "u" },
      { username: "", password: "p" },
      { username: 1, password: "p" },
    ]) {
      expect(credentialsProblem(bad), JSON.stringify(bad)).toBeDefined();
    }
    const problem = credentialsProblem({ username: "user", password: "sec\nret" });
    expect(problem).toContain("line breaks");
    expect(problem).not.toContain("sec");
    expect(credentialsProblem({ username: "a:b", password: "p" })).toContain("':'");
    expect(credentialsProblem({ username: "u", password: "x".repeat(9000) })).toContain("at most");
  });
});
