/** WWW-Authenticate challenges and token URLs, and where the registry client speaks to. */
import { describe, expect, it } from "vitest";
import { parseChallenges, tokenFromAnswer, tokenUrl } from "./registry-auth.js";
import { RegistryClient } from "./registry-client.js";

describe("registry auth", () => {
  it("reads bearer and basic challenges, quoted commas and escapes included", () => {
    const header =
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/x:pull,push", Basic realm="a \\"quoted\\" realm"';
    expect(parseChallenges(header)).toEqual([
      {
        scheme: "bearer",
        params: {
          realm: "https://auth.docker.io/token",
          service: "registry.docker.io",
          scope: "repository:library/x:pull,push",
        },
      },
      { scheme: "basic", params: { realm: 'a "quoted" realm' } },
    ]);
    expect(parseChallenges("")).toEqual([]);
  });

  it("builds the token URL from the challenge (its scope first) and reads token or access_token", () => {
    const [challenge] = parseChallenges('Bearer realm="https://auth.example/token?x=1",service="reg"');
    const url = tokenUrl(challenge as never, "repository:a/b:pull");
    expect(url.href).toBe("https://auth.example/token?x=1&service=reg&scope=repository%3Aa%2Fb%3Apull");
    expect(() => tokenUrl({ scheme: "bearer", params: { realm: "file:///etc/passwd" } }, "s")).toThrow("not HTTP(S)");
    expect(tokenFromAnswer({ token: "t" })).toBe("t");
    expect(tokenFromAnswer({ access_token: "a" })).toBe("a");
    expect(tokenFromAnswer({ token: "" })).toBeUndefined();
  });

  it("speaks HTTPS to registries, Docker Hub at registry-1.docker.io, plain HTTP only on loopback or when told", () => {
    expect(new RegistryClient("docker.io", "library/python").apiBase).toBe("https://registry-1.docker.io/v2/");
    expect(new RegistryClient("ghcr.io", "org/app").apiBase).toBe("https://ghcr.io/v2/");
    expect(new RegistryClient("127.0.0.1:5000", "x").apiBase).toBe("http://127.0.0.1:5000/v2/");
    expect(new RegistryClient("[::1]:5000", "x").apiBase).toBe("http://[::1]:5000/v2/");
    expect(new RegistryClient("localhost:5000", "x").apiBase).toBe("http://localhost:5000/v2/");
    expect(new RegistryClient("reg.lan:5000", "x").apiBase).toBe("https://reg.lan:5000/v2/");
    expect(new RegistryClient("reg.lan:5000", "x", { insecureRegistries: ["reg.lan:5000"] }).apiBase).toBe(
      "http://reg.lan:5000/v2/",
    );
  });
});
