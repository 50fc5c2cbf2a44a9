/** The `sbx` command line. */
import { homedir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { PrerequisiteError, startServer } from "@sbx/server";

const VERSION = "0.1.0";
const USAGE = `Usage:
  sbx server [--listen 127.0.0.1:7420] [--data-dir DIR] [--token TOKEN]
  sbx --help | --version

sbx server runs sandboxes on this machine (Linux, as root) and serves the sbx API
(gRPC and the Connect protocol, with CORS) on one port. Every request needs
"Authorization: Bearer <token>"; without --token, a token is generated on first start,
stored in DATA-DIR/token and printed once. Clients read SBX_ENDPOINT and SBX_TOKEN.
The data dir defaults to $SBX_DATA_DIR, else ~/.local/share/sbx.`;

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
  let values: { listen?: string; "data-dir"?: string; token?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: rest,
      options: {
        listen: { type: "string" },
        "data-dir": { type: "string" },
        token: { type: "string" },
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
  const dataDir = values["data-dir"] ?? process.env.SBX_DATA_DIR ?? join(homedir(), ".local", "share", "sbx");
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer({
      dataDir,
      ...(values.listen ? { listen: values.listen } : {}),
      ...(values.token ? { token: values.token } : {}),
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
