/**
 * Whether the image store's tests can run here: they need root (file owners), mknod, setfattr
 * and overlayfs. In CI a missing piece fails the run; elsewhere the suite is skipped with the
 * reasons, like the real-server suites.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

const has = (command: string) => {
  try {
    execFileSync("sh", ["-c", `command -v ${command}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
};

export async function imageStoreAvailable(what: string, tools: readonly string[] = []): Promise<boolean> {
  const problems: string[] = [];
  if (process.getuid?.() !== 0) problems.push("it must run as root");
  for (const tool of ["mknod", "mkfifo", "setfattr", "getfattr", ...tools]) {
    if (!has(tool)) problems.push(`${tool} is missing`);
  }
  if (!readFileSync("/proc/filesystems", "utf8").includes("overlay")) problems.push("overlayfs is missing");
  if (problems.length === 0) return true;
  const message = `${what} cannot run here:\n  ${problems.join("\n  ")}`;
  if (process.env.CI) throw new Error(message);
  console.warn(`skipping: ${message}`);
  return false;
}
