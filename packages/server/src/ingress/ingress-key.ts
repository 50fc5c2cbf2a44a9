/**
 * The key the server signs ingress tokens (connect tokens, service URLs) with: 32 random bytes
 * in `<data-dir>/ingress-token.key`, root's alone (0600), made at the first start and read at
 * every later one, so tokens handed out before a restart still open their ports after it.
 */
import { randomBytes } from "node:crypto";
import { closeSync, constants, fstatSync, openSync, readSync, writeSync } from "node:fs";
import { join } from "node:path";
import { TOKEN_KEY_BYTES } from "@sbx/server-kit/ingress";

export const INGRESS_KEY_FILE = "ingress-token.key";

/** The data dir's key, made (mode 0600) if there is none; an Error naming the file if it is not one we wrote. */
export function loadIngressKey(dataDir: string): Uint8Array {
  const file = join(dataDir, INGRESS_KEY_FILE);
  let fd: number;
  try {
    fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    return readKey(file);
  }
  try {
    const key = randomBytes(TOKEN_KEY_BYTES);
    writeSync(fd, key);
    return new Uint8Array(key);
  } finally {
    closeSync(fd);
  }
}

function readKey(file: string): Uint8Array {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const stat = fstatSync(fd);
    const problem = !stat.isFile()
      ? "is not a regular file"
      : stat.uid !== process.getuid?.()
        ? "is not the server's own"
        : (stat.mode & 0o077) !== 0
          ? `is readable by others (mode ${(stat.mode & 0o777).toString(8)}; it must be 600)`
          : stat.size !== TOKEN_KEY_BYTES
            ? `holds ${stat.size} bytes, not ${TOKEN_KEY_BYTES}`
            : undefined;
    if (problem)
      throw new Error(
        `the ingress token key ${file} ${problem}: remove it to make a new one (tokens handed out so far stop working)`,
      );
    const key = new Uint8Array(TOKEN_KEY_BYTES);
    if (readSync(fd, key, 0, TOKEN_KEY_BYTES, 0) !== TOKEN_KEY_BYTES)
      throw new Error(`the ingress token key ${file} is short`);
    return key;
  } finally {
    closeSync(fd);
  }
}
