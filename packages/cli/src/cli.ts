/** The `sbx` command line. */
import { homedir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { setFlagsFromString } from "node:v8";
import {
  DEFAULT_SERVER_NICE,
  insecureRegistryProblem,
  niceProblem,
  PrerequisiteError,
  startServer,
  type TunnelScheme,
  tunnelDomainProblem,
} from "@sbx/server";

const VERSION = "0.1.0";
const USAGE = `Usage:
  sbx server [--listen 127.0.0.1:7420] [--data-dir DIR] [--token TOKEN]
             [--output-retention-mib 64] [--disk-reserve-mib MIB]
             [--insecure-registry HOST:PORT ...]
             [--image-store-max-mib MIB] [--image-pull-timeout-s 3600] [--nice -10]
             [--net-cidr CIDR] [--net-deny none|CIDR,...] [--net-allow CIDR,...]
             [--net-max-connections 4096] [--dns-upstream ADDRESS[:PORT],...]
             [--tunnel-domain DOMAIN [--tunnel-scheme https|http] [--tunnel-public-port PORT]]
  sbx --help | --version

sbx server runs sandboxes on this machine (Linux, as root) and serves the sbx API
(gRPC and the Connect protocol, with CORS) on one port. Every request needs
"Authorization: Bearer <token>"; without --token, a token is generated on first start,
stored in DATA-DIR/token and printed once. Clients read SBX_ENDPOINT and SBX_TOKEN.
The data dir defaults to $SBX_DATA_DIR, else ~/.local/share/sbx.
--output-retention-mib: output kept per process stream; older output is dropped.
--disk-reserve-mib: free space kept on the data dir's filesystem; creates fail below it
(default 1024, or a tenth of the filesystem when smaller).
--insecure-registry: a registry pulled from over plain HTTP (repeatable); loopback
registries always are, others need HTTPS. Images are kept in DATA-DIR/images.
--image-store-max-mib: the most the images' layers may take; a pull past it fails
(default: no limit but the disk's).
--image-pull-timeout-s: how long one image pull may take (default 3600).
--nice: the CPU priority the server raises itself to (-20 to 19, default -10), so busy
sandboxes cannot starve the calls of quiet ones; sandboxes keep the priority the server
started with. A value no higher than the priority it has leaves it alone.
Sandboxes have outbound IPv4 (masqueraded; DNS through the server) unless created with
blockNetwork; never to this host, other sandboxes, loopback, link-local/metadata or multicast.
--net-cidr: the sandboxes' addresses (a /32 each; default a /21 of 10.213.0.0/16).
--net-deny: ranges no sandbox may reach (default the private ranges 10/8, 172.16/12,
192.168/16, 100.64/10; "none" lifts them). --net-allow: when set, sandboxes reach only these.
--net-max-connections: connections one sandbox may have tracked at once.
--dns-upstream: resolvers sandboxes' DNS is forwarded to (default: /etc/resolv.conf's).
--tunnel-domain: sandbox ports by host name on the server's own port, given a wildcard DNS
name *.DOMAIN pointing at this server: tunnels are https://<port>-<sandbox id>.DOMAIN,
connect-token and service URLs https://<port>-<sandbox id>-auth.DOMAIN, each an origin of its
own (browsers keep their cookies apart). Without it, each sandbox port gets a listener of its own.
--tunnel-scheme: the scheme of those URLs (default https: a TLS proxy with a *.DOMAIN
certificate in front; the server itself speaks plain HTTP; http is for development only:
no __Host- cookies, so sibling names can plant them). --tunnel-public-port: their port
(default 443 for https, the server's own port for http).`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "--version" || command === "-v") {
    console.log(VERSION);
    return 0;
  }
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    console.log(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command !== "server") {
    console.error(`sbx: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
    return 2;
  }
  let values: {
    listen?: string;
    "data-dir"?: string;
    token?: string;
    "output-retention-mib"?: string;
    "disk-reserve-mib"?: string;
    "insecure-registry"?: string[];
    "image-store-max-mib"?: string;
    "image-pull-timeout-s"?: string;
    nice?: string;
    "net-cidr"?: string;
    "net-deny"?: string[];
    "net-allow"?: string[];
    "net-max-connections"?: string;
    "dns-upstream"?: string[];
    "tunnel-domain"?: string;
    "tunnel-scheme"?: string;
    "tunnel-public-port"?: string;
    help?: boolean;
  };
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        listen: { type: "string" },
        "data-dir": { type: "string" },
        token: { type: "string" },
        "output-retention-mib": { type: "string" },
        "disk-reserve-mib": { type: "string" },
        "insecure-registry": { type: "string", multiple: true },
        "image-store-max-mib": { type: "string" },
        "image-pull-timeout-s": { type: "string" },
        nice: { type: "string" },
        "net-cidr": { type: "string" },
        "net-deny": { type: "string", multiple: true },
        "net-allow": { type: "string", multiple: true },
        "net-max-connections": { type: "string" },
        "dns-upstream": { type: "string", multiple: true },
        "tunnel-domain": { type: "string" },
        "tunnel-scheme": { type: "string" },
        "tunnel-public-port": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    console.error(`sbx server: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const limits: { outputRetentionMiB?: number; diskReserveMiB?: number; imageStoreMaxMiB?: number } = {};
  for (const [flag, key] of [
    ["output-retention-mib", "outputRetentionMiB"],
    ["disk-reserve-mib", "diskReserveMiB"],
    ["image-store-max-mib", "imageStoreMaxMiB"],
  ] as const) {
    const value = values[flag];
    if (value === undefined) continue;
    if (!/^\d+$/.test(value)) {
      console.error(`sbx server: --${flag} must be a whole number of MiB, got ${JSON.stringify(value)}\n\n${USAGE}`);
      return 2;
    }
    limits[key] = Number(value);
  }
  const pullTimeout = values["image-pull-timeout-s"];
  // Any number of seconds whose ms the server can count (the store's timers wait that long).
  const maxPullTimeoutS = Math.floor(Number.MAX_SAFE_INTEGER / 1000);
  if (pullTimeout !== undefined && !(/^[1-9]\d*$/.test(pullTimeout) && Number(pullTimeout) <= maxPullTimeoutS)) {
    console.error(
      `sbx server: --image-pull-timeout-s must be a whole number of seconds from 1 to ${maxPullTimeoutS}, got ${JSON.stringify(pullTimeout)}\n\n${USAGE}`,
    );
    return 2;
  }
  const nice = values.nice ?? String(DEFAULT_SERVER_NICE);
  if (!/^-?\d+$/.test(nice) || niceProblem(Number(nice))) {
    console.error(`sbx server: --nice must be a whole number from -20 to 19, got ${JSON.stringify(nice)}\n\n${USAGE}`);
    return 2;
  }
  const insecureRegistries = values["insecure-registry"] ?? [];
  for (const registry of insecureRegistries) {
    const problem = insecureRegistryProblem(registry);
    if (problem) {
      console.error(`sbx server: --insecure-registry: ${problem}\n\n${USAGE}`);
      return 2;
    }
  }
  const list = (flag: string[] | undefined) => flag?.flatMap((v) => v.split(",")).filter((v) => v !== "");
  const deny = list(values["net-deny"]);
  const maxConnections = values["net-max-connections"];
  if (maxConnections !== undefined && !/^[1-9]\d*$/.test(maxConnections)) {
    console.error(
      `sbx server: --net-max-connections must be a whole number, got ${JSON.stringify(maxConnections)}\n\n${USAGE}`,
    );
    return 2;
  }
  const network = {
    ...(values["net-cidr"] ? { cidr: values["net-cidr"] } : {}),
    ...(deny ? { deny: deny.length === 1 && deny[0] === "none" ? [] : deny } : {}),
    ...(values["net-allow"] ? { allow: list(values["net-allow"]) } : {}),
    ...(maxConnections ? { maxConnections: Number(maxConnections) } : {}),
    ...(values["dns-upstream"] ? { dnsUpstream: list(values["dns-upstream"]) } : {}),
  };
  const tunnel = tunnelOptions(values["tunnel-domain"], values["tunnel-scheme"], values["tunnel-public-port"]);
  if (typeof tunnel === "string") {
    console.error(`sbx server: ${tunnel}\n\n${USAGE}`);
    return 2;
  }
  const dataDir = values["data-dir"] ?? process.env.SBX_DATA_DIR ?? join(homedir(), ".local", "share", "sbx");
  // The server moves bytes (output, files, tunnels) through Buffers: by default V8 runs a full
  // collection of the whole heap each time 64 MiB more of them have been allocated, whether or
  // not they are still held, which cost the server as much CPU as the bytes' own handling (a
  // GiB of stdout: 4.6-5.5 s of the server's CPU, 2.5-2.8 s with this, ~60 MB more peak RSS).
  // Counted within the heap's own limit, Buffers that die young go with the young generation.
  // (V8 13 and later, Node 24: older ones do not know the flag and would say so on stderr.)
  if (Number(process.versions.v8.split(".")[0]) >= 13)
    setFlagsFromString("--external-memory-accounted-in-global-limit");
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer({
      dataDir,
      ...(values.listen ? { listen: values.listen } : {}),
      ...(values.token ? { token: values.token } : {}),
      ...limits,
      ...(insecureRegistries.length > 0 ? { insecureRegistries } : {}),
      ...(pullTimeout !== undefined ? { imagePullTimeoutMs: Number(pullTimeout) * 1000 } : {}),
      nice: Number(nice),
      network,
      ...tunnel,
    });
  } catch (error) {
    if (error instanceof PrerequisiteError) {
      console.error(error.message);
      return 1;
    }
    console.error(`sbx server: ${(error as Error).message}`);
    return 1;
  }
  if (server.tokenGenerated) {
    console.log(`generated a token (stored in ${join(dataDir, "token")}): ${server.token}`);
  }
  console.log(`sbx server listening on ${server.url}`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      resolve();
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
  await server.close();
  return 0;
}

/** The tunnel-domain flags as server options, or what is wrong with them. */
function tunnelOptions(
  domain: string | undefined,
  scheme: string | undefined,
  publicPort: string | undefined,
): { tunnelDomain?: string; tunnelScheme?: TunnelScheme; tunnelPublicPort?: number } | string {
  if (domain === undefined) {
    return scheme === undefined && publicPort === undefined
      ? {}
      : "--tunnel-scheme and --tunnel-public-port need --tunnel-domain";
  }
  const problem = tunnelDomainProblem(domain);
  if (problem) return `--tunnel-domain: ${problem}`;
  if (scheme !== undefined && scheme !== "https" && scheme !== "http") {
    return `--tunnel-scheme must be https or http, got ${JSON.stringify(scheme)}`;
  }
  if (publicPort !== undefined && !(/^[1-9]\d{0,4}$/.test(publicPort) && Number(publicPort) <= 65_535)) {
    return `--tunnel-public-port must be a port from 1 to 65535, got ${JSON.stringify(publicPort)}`;
  }
  return {
    tunnelDomain: domain,
    ...(scheme !== undefined ? { tunnelScheme: scheme as TunnelScheme } : {}),
    ...(publicPort !== undefined ? { tunnelPublicPort: Number(publicPort) } : {}),
  };
}
