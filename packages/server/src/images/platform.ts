/** The platform an image is pulled for: this host's (linux, and Node's `process.arch` in GOARCH names). */
import type { ImagePlatform } from "@sbx/server-kit";

const GOARCH: Readonly<Record<string, string>> = {
  x64: "amd64",
  arm64: "arm64",
  arm: "arm",
  ia32: "386",
  ppc64: "ppc64le",
  s390x: "s390x",
  riscv64: "riscv64",
  loong64: "loong64",
  mips: "mips",
  mipsel: "mipsle",
};

export function hostPlatform(): ImagePlatform {
  const architecture = GOARCH[process.arch] ?? process.arch;
  if (architecture === "arm64") return { os: "linux", architecture, variant: "v8" };
  if (architecture === "arm") {
    const armVersion = (process.config.variables as Record<string, unknown>).arm_version;
    return { os: "linux", architecture, variant: `v${typeof armVersion === "string" ? armVersion : "7"}` };
  }
  return { os: "linux", architecture };
}
