/** The platform an image is pulled for: this host's (linux, and Node's `process.arch` in GOARCH names). */
import { goArch, type ImagePlatform } from "@sbx/server-kit";

export function hostPlatform(): ImagePlatform {
  const architecture = goArch(process.arch);
  if (architecture === "arm64") return { os: "linux", architecture, variant: "v8" };
  if (architecture === "arm") {
    const armVersion = (process.config.variables as Record<string, unknown>).arm_version;
    return { os: "linux", architecture, variant: `v${typeof armVersion === "string" ? armVersion : "7"}` };
  }
  return { os: "linux", architecture };
}
