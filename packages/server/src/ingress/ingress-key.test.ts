// The server's ingress token key: made once (0600), read again at every start, so a token
// handed out before a restart verifies after it; a key file that is not one we wrote is refused.
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IngressTokens } from "@sbx/server-kit/ingress";
import { afterEach, describe, expect, it } from "vitest";
import { INGRESS_KEY_FILE, loadIngressKey } from "./ingress-key.js";

describe("the ingress token key", () => {
  const dirs: string[] = [];
  const dataDir = () => {
    const dir = mkdtempSync(join(tmpdir(), "sbx-ingress-key-"));
    dirs.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it("is made once, mode 0600, and a token signed before a restart verifies after it", async () => {
    const dir = dataDir();
    const before = new IngressTokens(loadIngressKey(dir));
    const file = join(dir, INGRESS_KEY_FILE);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file).byteLength).toBe(32);
    const { token } = await before.issue({ sandboxId: "sb-1", port: 8080, audience: "service", expiresInMs: 60_000 });
    const after = new IngressTokens(loadIngressKey(dir));
    expect(await after.verify(token, { sandboxId: "sb-1", port: 8080 })).toMatchObject({ ok: true });
    const elsewhere = new IngressTokens(loadIngressKey(dataDir()));
    expect(await elsewhere.verify(token, { sandboxId: "sb-1", port: 8080 })).toMatchObject({ ok: false });
  });

  it("refuses a key others can read, of the wrong size, or behind a symlink", () => {
    const loose = dataDir();
    writeFileSync(join(loose, INGRESS_KEY_FILE), Buffer.alloc(32, 1), { mode: 0o644 });
    chmodSync(join(loose, INGRESS_KEY_FILE), 0o644);
    expect(() => loadIngressKey(loose)).toThrow(/readable by others \(mode 644/);
    const short = dataDir();
    writeFileSync(join(short, INGRESS_KEY_FILE), Buffer.alloc(8, 1), { mode: 0o600 });
    expect(() => loadIngressKey(short)).toThrow(/holds 8 bytes, not 32/);
    const linked = dataDir();
    writeFileSync(join(linked, "elsewhere"), Buffer.alloc(32, 1), { mode: 0o600 });
    symlinkSync(join(linked, "elsewhere"), join(linked, INGRESS_KEY_FILE));
    expect(() => loadIngressKey(linked)).toThrow(/ELOOP/);
  });
});
