/**
 * The default image: what every process's environment starts from when a sandbox names no
 * image (both runtime drivers use it, so a fake process sees what a real one does), and its
 * description as an image like any other (`DEFAULT_IMAGE`, listed by ListImages as
 * "im-default"). Also how an image's config becomes a process's environment.
 */
import { DEFAULT_IMAGE_ID } from "@sbx/proto";
import { goArch, type ImageRecord } from "./image-store.js";

export const DEFAULT_IMAGE_ENV: Readonly<Record<string, string>> = Object.freeze({
  // /opt/sbx/bin last: the image's fallbacks (e.g. `python` → python3) never shadow the system's.
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/opt/sbx/bin",
  HOME: "/root",
  LANG: "C.UTF-8",
});

/** Added for a process run under a pseudo-terminal. */
export const PTY_ENV: Readonly<Record<string, string>> = Object.freeze({ TERM: "xterm-256color" });

/** PATH when an image's config sets none (Docker's). */
export const IMAGE_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** The host's architecture in OCI's (GOARCH) names, where the runtime says; else "unknown". */
function hostArchitecture(): string {
  const arch = (globalThis as { process?: { arch?: unknown } }).process?.arch;
  return typeof arch === "string" ? goArch(arch) : "unknown";
}

/**
 * The default image as an image record: the host's own system, read-only, with the sbx
 * fallbacks (see the local runtime's image.ts). Nothing to pull, no layers in a store, and it
 * cannot be deleted. A driver that describes its default image otherwise says so
 * (`SandboxRuntime.defaultImage`).
 */
export const DEFAULT_IMAGE: ImageRecord = Object.freeze({
  id: DEFAULT_IMAGE_ID,
  refs: Object.freeze([]),
  digest: "",
  sizeBytes: 0,
  createdAtMs: 0,
  platform: Object.freeze({ os: "linux", architecture: hostArchitecture() }),
  config: Object.freeze({
    env: Object.freeze(Object.entries(DEFAULT_IMAGE_ENV).map(([key, value]) => `${key}=${value}`)),
    workingDir: "/",
  }),
  layers: Object.freeze([]),
});

/** Whether `user` (an image's User: "name", "uid", "name:group", "uid:gid") is root. */
export function isRootUser(user: string | undefined): boolean {
  const name = (user ?? "").split(":")[0];
  return name === "" || name === "root" || name === "0";
}

/**
 * What an image's config gives every process: its `Env` entries (a later one wins), over
 * Docker's defaults when it sets none — PATH, and HOME ("/root" for root, "/" for another
 * user: a driver that reads the image's /etc/passwd may know better).
 */
export function imageEnv(image: ImageRecord): Record<string, string> {
  const env: Record<string, string> = {
    PATH: IMAGE_DEFAULT_PATH,
    HOME: isRootUser(image.config.user) ? "/root" : "/",
  };
  for (const entry of image.config.env) {
    const eq = entry.indexOf("=");
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return env;
}

/**
 * A process's environment: its image's (the default image's when `image` is undefined), a
 * terminal's when it has one, the sandbox's, the call's.
 */
export const processEnv = (
  pty: boolean,
  sandboxEnv: Readonly<Record<string, string>>,
  callEnv: Readonly<Record<string, string>>,
  image?: ImageRecord,
): Record<string, string> => ({
  ...(image ? imageEnv(image) : DEFAULT_IMAGE_ENV),
  ...(pty ? PTY_ENV : {}),
  ...sandboxEnv,
  ...callEnv,
});
