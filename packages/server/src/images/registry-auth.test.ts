/** WWW-Authenticate challenges and token URLs, and where the registry client speaks to. */
import { describe, expect, it } from "vitest";
import { parseChallenges, tokenFromAnswer, tokenUrl } from "./registry-auth.js";
import { isThisHost, RegistryClient } from "./registry-client.js";

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

  it("builds the token URL from the challenge (its realm and service) and reads token or access_token", () => {
    const [challenge] = parseChallenges('Bearer realm="https://auth.example/token?x=1",service="reg"');
    const url = tokenUrl(challenge as never, "repository:a/b:pull");
    expect(url.href).toBe("https://auth.example/token?x=1&service=reg&scope=repository%3Aa%2Fb%3Apull");
    expect(() => tokenUrl({ scheme: "bearer", params: { realm: "file:///etc/passwd" } }, "s")).toThrow("not HTTP(S)");
    expect(tokenFromAnswer({ token: "t" })).toBe("t");
    expect(tokenFromAnswer({ access_token: "a" })).toBe("a");
    expect(tokenFromAnswer({ token: "" })).toBeUndefined();
  });

  it("asks a token for pull of the repository only, whatever more the challenge's scope names", () => {
    // A registry whose realm is another service's (where the same credentials work) must not
    // get from the store a token to push there, or to read other repositories.
    const [challenge] = parseChallenges(
      'Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push,delete repository:victim/private:pull registry:catalog:*"',
    );
    const url = tokenUrl(challenge as never, "repository:a/b:pull");
    expect(url.searchParams.getAll("scope")).toEqual(["repository:a/b:pull"]);
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

  it("tells the hosts that reach this host (loopback, 0.0.0.0) in every spelling URL normalizes", () => {
    const host = (url: string) => isThisHost(new URL(url).hostname);
    for (const url of [
      "http://127.0.0.1:5000/",
      "http://127.1/",
      "http://2130706433/",
      "http://0x7f.1/",
      "http://0.0.0.0/",
      "http://0/",
      "http://localhost/",
      "http://LOCALHOST./",
      "http://registry.localhost/",
      "http://[::1]/",
      "http://[0:0:0:0:0:0:0:1]/",
      "http://[::]/",
      "http://[::ffff:127.0.0.1]/",
      "http://[::ffff:0.0.0.0]/",
    ]) {
      expect(host(url), url).toBe(true);
    }
    for (const url of [
      "http://10.0.0.1/",
      "http://127.0.0.1.nip.io/",
      "http://[::ffff:10.0.0.1]/",
      "https://ghcr.io/",
    ]) {
      expect(host(url), url).toBe(false);
    }
  });
});
