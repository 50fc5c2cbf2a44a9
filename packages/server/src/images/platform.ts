/**
 * The platform an image is pulled for: this host's (linux, and Node's `process.arch` in GOARCH
 * names), and how one is chosen from an index.
 */
import type { ImagePlatform } from "@sbx/server-kit";
import type { Descriptor } from "./manifest.js";

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

export const formatPlatform = (p: ImagePlatform): string =>
  `${p.os}/${p.architecture}${p.variant !== undefined ? `/${p.variant}` : ""}`;

/**
 * Whether an image made for `image` runs on `host`: same os and architecture, and a variant
 * that is the host's or unsaid (arm64 images rarely say v8).
 */
export function platformMatches(image: ImagePlatform, host: ImagePlatform): boolean {
  if (image.os !== host.os || image.architecture !== host.architecture) return false;
  return image.variant === undefined || host.variant === undefined || image.variant === host.variant;
}

/**
 * The index entry for `host`: one that names the host's variant first, then one that names
 * none. Entries without a platform (attestations, or an OCI layout's single image) never match.
 */
export function choosePlatform(manifests: readonly Descriptor[], host: ImagePlatform): Descriptor | undefined {
  const candidates = manifests.filter((m) => m.platform !== undefined && platformMatches(m.platform, host));
  return (
    candidates.find((m) => m.platform?.variant !== undefined && m.platform.variant === host.variant) ?? candidates[0]
  );
}
