/**
 * Test support for sandboxes started from images: test images imported into a real image
 * store (OCI layouts from the store's own builders, packed as archives), a static probe of ids
 * and capabilities, and commands run through a runtime sandbox with their output collected.
 */
import { execFileSync } from "node:child_process";
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ImageRecord, RuntimeProcessSpec, RuntimeSandbox } from "@sbx/server-kit";
import type { OciImageStore } from "../../../images/index.js";
import { type TestImage, writeOciImage } from "../../../images/test-support/oci-layout.js";
import type { TarEntry } from "../../../images/test-support/tar-layers.js";

/** Imports `image` into `store` as an OCI layout archive; answers its record. */
export async function importTestImage(store: OciImageStore, work: string, image: TestImage): Promise<ImageRecord> {
  const layout = mkdtempSync(join(work, "layout-"));
  await writeOciImage(layout, "test", image);
  const archive = `${layout}.tar`;
  execFileSync("tar", ["-C", layout, "-cf", archive, "."]);
  return store.importArchive(createReadStream(archive));
}

/** Every busybox applet as a symlink in bin/ (Debian's busybox-static), and the binary. */
export function busyboxRoot(): TarEntry[] {
  const busybox = readFileSync("/usr/bin/busybox");
  const applets = execFileSync("/usr/bin/busybox", ["--list"], { encoding: "utf8" }).split("\n").filter(Boolean);
  return [
    { name: "bin/", type: "directory", mode: 0o755 },
    { name: "bin/busybox", content: busybox, mode: 0o755 },
    ...applets
      .filter((applet) => applet !== "busybox" && /^[a-z0-9_.[-]+$/.test(applet))
      .map((applet): TarEntry => ({ name: `bin/${applet}`, type: "symlink", linkname: "busybox" })),
    { name: "tmp/", type: "directory", mode: 0o1777 },
  ];
}

/**
 * A static program printing the caller's ids and capability sets (`ids`), or giving a file
 * every capability as file capabilities (`ids setcap FILE`, what a hostile image could carry).
 */
const IDS_PROBE = `package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "setcap" {
		// struct vfs_cap_data, revision 2: magic_etc, then {permitted, inheritable} low, high.
		caps := []byte{0x01, 0, 0, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0}
		if err := syscall.Setxattr(os.Args[2], "security.capability", caps, 0); err != nil {
			fmt.Println("setcap:", err)
			os.Exit(1)
		}
		return
	}
	groups, _ := syscall.Getgroups()
	fmt.Printf("uid=%d euid=%d gid=%d egid=%d groups=%v\\n", syscall.Getuid(), syscall.Geteuid(), syscall.Getgid(), syscall.Getegid(), groups)
	status, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(status), "\\n") {
		for _, key := range []string{"CapInh", "CapPrm", "CapEff", "CapAmb"} {
			if strings.HasPrefix(line, key+":") {
				fmt.Println(strings.Join(strings.Fields(line), " "))
			}
		}
	}
}
`;

/** Builds the ids probe (static, Go's standard library only) into `dir`; answers its bytes. */
export function buildIdsProbe(dir: string): Buffer {
  const source = join(dir, "ids-probe");
  mkdirSync(source, { recursive: true });
  writeFileSync(join(source, "main.go"), IDS_PROBE);
  writeFileSync(join(source, "go.mod"), "module idsprobe\n\ngo 1.19\n");
  const out = join(dir, "ids");
  const env: NodeJS.ProcessEnv = { ...process.env, CGO_ENABLED: "0", GOPROXY: "off", GOFLAGS: "-mod=mod" };
  if (!env.GOCACHE && !env.HOME && !env.XDG_CACHE_HOME) env.GOCACHE = join(dir, "go-cache");
  execFileSync("go", ["build", "-trimpath", "-o", out, "."], { cwd: source, env, stdio: "pipe" });
  return readFileSync(out);
}

export interface Ran {
  /** stdout and stderr, in the order written. */
  readonly out: string;
  /** The exit code, or 128 + the signal. */
  readonly code: number;
}

/** Runs `argv` in `sandbox` (stderr merged into stdout), `stdin` given whole; waits for it. */
export async function runIn(
  sandbox: RuntimeSandbox,
  argv: string[],
  options: Partial<Pick<RuntimeProcessSpec, "env" | "workdir" | "pty">> & { stdin?: string } = {},
): Promise<Ran> {
  const process = await sandbox.exec({
    argv,
    env: options.env ?? {},
    workdir: options.workdir,
    pty: options.pty ?? false,
    mergeStderr: true,
  });
  const chunks: Buffer[] = [];
  process.onStdout((chunk) => chunks.push(Buffer.from(chunk)));
  process.onStderr((chunk) => chunks.push(Buffer.from(chunk)));
  if (options.stdin) await process.writeStdin(new TextEncoder().encode(options.stdin));
  await process.closeStdin();
  const exit = await process.exit;
  return {
    out: Buffer.concat(chunks).toString("utf8"),
    code: exit.kind === "exited" ? exit.code : 128 + exit.signal,
  };
}

/** `sh -c script` in `sandbox`. */
export const shIn = (sandbox: RuntimeSandbox, script: string, options: Parameters<typeof runIn>[2] = {}) =>
  runIn(sandbox, ["sh", "-c", script], options);
