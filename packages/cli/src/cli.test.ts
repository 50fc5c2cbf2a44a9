import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";

const MAIN = join(dirname(fileURLToPath(import.meta.url)), "../dist/main.js");
const scratch = mkdtempSync(join(tmpdir(), "sbx-cli-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const sbx = (args: string[], env: NodeJS.ProcessEnv = process.env) =>
  spawnSync(process.execPath, [MAIN, ...args], { encoding: "utf8", env, timeout: 20_000 });

describe("sbx CLI", () => {
  it("prints help and version", () => {
    const help = sbx(["--help"]);
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("sbx server [--listen 127.0.0.1:7420] [--data-dir DIR] [--token TOKEN]");
    expect(help.stdout).toContain("[--insecure-registry HOST:PORT ...]");
    expect(help.stdout).toContain("[--image-store-max-mib MIB] [--image-pull-timeout-s 3600]");
    expect(help.stdout).toContain("[--tunnel-domain DOMAIN [--tunnel-scheme https|http] [--tunnel-public-port PORT]]");
    expect(sbx(["--version"]).stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it("rejects unknown commands and flags with a usage error (exit 2)", () => {
    expect(sbx(["serve"]).status).toBe(2);
    const flag = sbx(["server", "--port", "1"]);
    expect(flag.status).toBe(2);
    expect(flag.stderr).toMatch(/Unknown option '--port'/);
    const size = sbx(["server", "--output-retention-mib", "64M"]);
    expect(size.status).toBe(2);
    expect(size.stderr).toContain('--output-retention-mib must be a whole number of MiB, got "64M"');
    const store = sbx(["server", "--image-store-max-mib", "10G"]);
    expect(store.status).toBe(2);
    expect(store.stderr).toContain('--image-store-max-mib must be a whole number of MiB, got "10G"');
    const timeout = sbx(["server", "--image-pull-timeout-s", "0"]);
    expect(timeout.status).toBe(2);
    expect(timeout.stderr).toContain(
      '--image-pull-timeout-s must be a whole number of seconds from 1 to 9007199254740, got "0"',
    );
    const huge = sbx(["server", "--image-pull-timeout-s", "99999999999999999999"]);
    expect(huge.status).toBe(2);
    expect(huge.stderr).toContain(
      '--image-pull-timeout-s must be a whole number of seconds from 1 to 9007199254740, got "99999999999999999999"',
    );
    const registry = sbx(["server", "--insecure-registry", "reg.lan:5000", "--insecure-registry", "not/a host"]);
    expect(registry.status).toBe(2);
    expect(registry.stderr).toContain(
      '--insecure-registry: "not/a host" is not a registry host (HOST:PORT, as in image references)',
    );
  });

  it("checks the tunnel-domain flags before starting (exit 2)", () => {
    const usage = (args: string[], message: string) => {
      const result = sbx(["server", ...args]);
      expect(result.status, args.join(" ")).toBe(2);
      expect(result.stderr, args.join(" ")).toContain(message);
      expect(result.stdout).not.toContain("listening");
    };
    usage(
      ["--tunnel-domain", "*.example.com"],
      '--tunnel-domain: tunnel domain "*.example.com": give the domain without "*."',
    );
    usage(["--tunnel-domain", "exa_mple.com"], '--tunnel-domain: tunnel domain "exa_mple.com" is not a DNS name');
    usage(["--tunnel-domain", "192.168.1.10"], 'tunnel domain "192.168.1.10" is an address, not a DNS name');
    usage(["--tunnel-domain", ""], "--tunnel-domain: the tunnel domain is empty");
    usage(
      ["--tunnel-domain", "example.com", "--tunnel-scheme", "ftp"],
      '--tunnel-scheme must be https or http, got "ftp"',
    );
    usage(
      ["--tunnel-domain", "example.com", "--tunnel-public-port", "0443"],
      '--tunnel-public-port must be a port from 1 to 65535, got "0443"',
    );
    usage(
      ["--tunnel-domain", "example.com", "--tunnel-public-port", "65536"],
      '--tunnel-public-port must be a port from 1 to 65535, got "65536"',
    );
    usage(["--tunnel-scheme", "http"], "--tunnel-scheme and --tunnel-public-port need --tunnel-domain");
    usage(["--tunnel-public-port", "443"], "--tunnel-scheme and --tunnel-public-port need --tunnel-domain");
  });

  it("stops with one clear sentence per missing prerequisite", () => {
    // A PATH with every tool the server needs except bubblewrap.
    const bin = join(scratch, "bin");
    spawnSync("mkdir", ["-p", bin]);
    for (const tool of ["sh", "setpriv", "mkfifo", "mount", "umount"]) {
      const found = spawnSync("sh", ["-c", `command -v ${tool}`], { encoding: "utf8" }).stdout.trim();
      if (found) symlinkSync(found, join(bin, tool));
    }
    const result = sbx(["server", "--data-dir", join(scratch, "data"), "--listen", "127.0.0.1:0"], {
      ...process.env,
      PATH: bin,
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("bwrap is missing: install it with 'apt-get install bubblewrap'");
    expect(result.stdout).not.toContain("listening");
  });
});
