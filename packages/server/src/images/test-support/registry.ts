/**
 * Test support: a real OCI registry on loopback (Debian's docker-registry, distribution v2),
 * open, behind htpasswd basic auth (bcrypt, made with apache2-utils' htpasswd -B), or behind
 * bearer tokens from a token server of the test's own (JWTs signed with a key whose
 * self-signed certificate the registry trusts). skopeo pushes the test images into it.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { createPrivateKey, randomUUID, sign } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { createServer as createNetServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export const TEST_USER = "sbx-user";
export const TEST_PASSWORD = "s3cret-p4ss";

/** A free TCP port on loopback (closed again before it is returned). */
export async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface TestRegistry {
  /** "127.0.0.1:<port>": loopback, so the store speaks plain HTTP to it. */
  readonly host: string;
  /** Where the registry keeps its blobs (docker/registry/v2/blobs/sha256/<2>/<hex>/data). */
  readonly storage: string;
  /** Token server: repositories under "public/" get anonymous pull tokens. */
  readonly auth: "none" | "basic" | "token";
  stop(): Promise<void>;
  /** Starts it again on the same port and storage. */
  start(): Promise<void>;
  /** Pushes image `tag` of the OCI layout in `layoutDir` as `repo:tag` (`all`: an index with every platform). */
  push(
    layoutDir: string,
    tag: string,
    repo: string,
    options?: { all?: boolean; format?: "oci" | "v2s2" },
  ): Promise<void>;
  close(): Promise<void>;
}

export interface RegistryCredentials {
  readonly username: string;
  readonly password: string;
}

/**
 * A registry on a free loopback port. `credentials`: the one account of a basic or token auth
 * registry (default TEST_USER / TEST_PASSWORD).
 */
export async function startTestRegistry(
  auth: "none" | "basic" | "token" = "none",
  options: { credentials?: RegistryCredentials } = {},
): Promise<TestRegistry> {
  const account = options.credentials ?? { username: TEST_USER, password: TEST_PASSWORD };
  const dir = mkdtempSync(join(tmpdir(), "sbx-registry-"));
  const storage = join(dir, "storage");
  mkdirSync(storage);
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  let authConfig = "";
  let tokenServer: Server | undefined;
  if (auth === "basic") {
    const htpasswd = execFileSync("htpasswd", ["-Bbn", account.username, account.password], { encoding: "utf8" });
    writeFileSync(join(dir, "htpasswd"), htpasswd);
    authConfig = `auth:\n  htpasswd:\n    realm: sbx-test\n    path: ${join(dir, "htpasswd")}\n`;
  } else if (auth === "token") {
    execFileSync(
      "openssl",
      ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"].concat([
        "-subj",
        "/CN=sbx-test-token",
        "-keyout",
        join(dir, "token.key"),
        "-out",
        join(dir, "token.crt"),
      ]),
      { stdio: "ignore" },
    );
    const tokenPort = await freePort();
    tokenServer = await startTokenServer(tokenPort, join(dir, "token.key"), join(dir, "token.crt"), account);
    authConfig = [
      "auth:",
      "  token:",
      `    realm: http://127.0.0.1:${tokenPort}/token`,
      "    service: sbx-test-registry",
      "    issuer: sbx-test-issuer",
      `    rootcertbundle: ${join(dir, "token.crt")}`,
      "",
    ].join("\n");
  }
  const config = [
    "version: 0.1",
    "log:",
    "  level: error",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${storage}`,
    "  delete:",
    "    enabled: true",
    "http:",
    `  addr: ${host}`,
    authConfig,
  ].join("\n");
  writeFileSync(join(dir, "config.yml"), config);

  let child: ChildProcess | undefined;
  const start = async () => {
    if (child !== undefined && child.exitCode === null) return;
    const spawned = spawn("docker-registry", ["serve", join(dir, "config.yml")], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    child = spawned;
    // A test run that ends without its hooks (a timeout) still leaves no registry behind.
    const killOnExit = () => spawned.kill("SIGKILL");
    process.once("exit", killOnExit);
    spawned.once("exit", () => process.off("exit", killOnExit));
    let stderr = "";
    spawned.stderr?.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    for (let i = 0; ; i++) {
      if (spawned.exitCode !== null) throw new Error(`docker-registry exited: ${stderr}`);
      const ok = await fetch(`http://${host}/v2/`).then(
        () => true,
        () => false,
      );
      if (ok) return;
      if (i > 200) throw new Error(`docker-registry did not answer on ${host}: ${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  };
  const stop = async () => {
    const running = child;
    child = undefined;
    if (running === undefined || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.once("exit", resolve));
    running.kill("SIGTERM");
    await exited;
  };
  await start();
  const creds = auth === "none" ? [] : ["--dest-creds", `${account.username}:${account.password}`];
  return {
    host,
    storage,
    auth,
    start,
    stop,
    async push(layoutDir, tag, repo, options = {}) {
      // Not execFileSync: the token server answering skopeo runs in this process.
      await run("skopeo", [
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        ...creds,
        ...(options.all ? ["--all"] : []),
        ...(options.format ? ["--format", options.format] : []),
        `oci:${layoutDir}:${tag}`,
        `docker://${host}/${repo}:${tag}`,
      ]);
    },
    async close() {
      await stop();
      await new Promise((resolve) => (tokenServer ? tokenServer.close(resolve) : resolve(undefined)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A token server as the distribution spec describes it: GET /token?service=…&scope=… answers
 * {token} (an ES256 JWT with the certificate in x5c). Basic credentials of `account` get every
 * action asked for; no credentials get pull on "public/…" repositories only; wrong
 * ones get 401.
 */
async function startTokenServer(
  port: number,
  keyPath: string,
  certPath: string,
  account: RegistryCredentials,
): Promise<Server> {
  const key = createPrivateKey(readFileSync(keyPath));
  const certDer = Buffer.from(
    readFileSync(certPath, "utf8")
      .replace(/-----(BEGIN|END) CERTIFICATE-----/g, "")
      .replace(/\s+/g, ""),
    "base64",
  ).toString("base64");
  const b64url = (data: Buffer | string) => Buffer.from(data).toString("base64url");
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", `http://127.0.0.1:${port}`);
    const authorization = req.headers.authorization;
    let user: string | undefined;
    if (authorization !== undefined) {
      const [scheme, value] = authorization.split(" ");
      const [name, password] = Buffer.from(value ?? "", "base64")
        .toString("utf8")
        .split(":");
      if (scheme !== "Basic" || name !== account.username || password !== account.password) {
        res.writeHead(401, { "content-type": "application/json" }).end('{"details":"bad credentials"}');
        return;
      }
      user = name;
    }
    const access = url.searchParams.getAll("scope").flatMap((scope) => {
      const [type, name, actions] = scope.split(":");
      if (type !== "repository" || name === undefined) return [];
      if (user === undefined && !name.startsWith("public/")) return [];
      const granted = (actions ?? "").split(",").filter((a) => user !== undefined || a === "pull");
      return [{ type, name, actions: granted }];
    });
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: "JWT", alg: "ES256", x5c: [certDer] };
    const claims = {
      iss: "sbx-test-issuer",
      sub: user ?? "",
      aud: url.searchParams.get("service") ?? "",
      exp: now + 300,
      nbf: now - 10,
      iat: now,
      jti: randomUUID(),
      access,
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = sign("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" });
    res
      .writeHead(200, { "content-type": "application/json" })
      .end(JSON.stringify({ token: `${input}.${b64url(signature)}` }));
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return server;
}
