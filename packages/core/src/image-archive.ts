/**
 * A local image archive as one tar stream, for `images.import(path)`: a tarball is sent as it
 * is; an OCI image layout directory is tarred on the fly (ustar, with PAX records for long
 * names and large files), its files in name order. Loaded on first use.
 */
import { InvalidError } from "./errors.js";
import type { LocalFiles } from "./filesystem.js";

/** What `images.import(path)` needs of the runtime's local files (Node, Deno, Bun). */
export interface LocalImageFiles extends Pick<LocalFiles, "read"> {
  /** What `path` is (symlinks followed when `follow`, else described); rejects when it does not exist. */
  stat(
    path: string,
    follow: boolean,
  ): Promise<{ readonly type: "file" | "directory" | "other"; readonly size: number }>;
  /** The names in a directory (no "." or ".."). */
  list(path: string): Promise<string[]>;
}

const BLOCK = 512;
const encoder = new TextEncoder();

/** A ustar header (with a PAX record before it when the name or size does not fit). */
function headers(name: string, type: "file" | "directory", size: number): Uint8Array[] {
  const nameBytes = encoder.encode(name);
  const records: string[] = [];
  if (nameBytes.byteLength > 100) records.push(paxRecord("path", name));
  if (size > 0o77777777777) records.push(paxRecord("size", String(size)));
  const out: Uint8Array[] = [];
  if (records.length > 0) {
    const body = encoder.encode(records.join(""));
    out.push(header("PaxHeader", "x", body.byteLength, 0o644), body, padding(body.byteLength));
  }
  out.push(
    header(
      nameBytes.byteLength > 100 ? "long-name" : name,
      type === "file" ? "0" : "5",
      size > 0o77777777777 ? 0 : size,
      type === "file" ? 0o644 : 0o755,
    ),
  );
  return out;
}

/** "LEN key=value\n", LEN counting its own digits. */
function paxRecord(key: string, value: string): string {
  const rest = encoder.encode(` ${key}=${value}\n`).byteLength;
  let length = rest + 1;
  while (String(length).length + rest !== length) length = String(length).length + rest;
  return `${length} ${key}=${value}\n`;
}

function header(name: string, flag: string, size: number, mode: number): Uint8Array {
  const block = new Uint8Array(BLOCK);
  const put = (at: number, text: string) => block.set(encoder.encode(text), at);
  const octal = (at: number, width: number, value: number) =>
    put(at, `${value.toString(8).padStart(width - 1, "0")}\0`);
  put(0, name);
  octal(100, 8, mode);
  octal(108, 8, 0); // uid
  octal(116, 8, 0); // gid
  octal(124, 12, size);
  octal(136, 12, 0); // mtime: the archive is the same whenever it is made
  put(156, flag);
  put(257, "ustar\0");
  put(263, "00");
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of block) sum += b;
  put(148, `${sum.toString(8).padStart(6, "0")}\0 `);
  return block;
}

const padding = (size: number) => new Uint8Array((BLOCK - (size % BLOCK)) % BLOCK);

const join = (dir: string, name: string) => (dir.endsWith("/") ? dir + name : `${dir}/${name}`);

/** The layout's entries (relative names, directories before what they hold), in name order. */
async function walk(
  files: LocalImageFiles,
  root: string,
): Promise<{ name: string; type: "file" | "directory"; size: number }[]> {
  const out: { name: string; type: "file" | "directory"; size: number }[] = [];
  const visit = async (dir: string, prefix: string): Promise<void> => {
    for (const entry of (await files.list(dir)).sort()) {
      const path = join(dir, entry);
      const name = prefix + entry;
      const info = await files.stat(path, false);
      if (info.type === "other") {
        throw new InvalidError(
          `import: ${path} is neither a file nor a directory (an OCI image layout holds only those)`,
        );
      }
      out.push({ name: info.type === "directory" ? `${name}/` : name, type: info.type, size: info.size });
      if (info.type === "directory") await visit(path, `${name}/`);
    }
  };
  await visit(root, "");
  return out;
}

/** The directory at `root` as a tar stream; a file that changes size while it is read fails it. */
async function* tarDirectory(files: LocalImageFiles, root: string): AsyncGenerator<Uint8Array> {
  const entries = await walk(files, root);
  if (!entries.some((e) => e.name === "oci-layout") || !entries.some((e) => e.name === "index.json")) {
    throw new InvalidError(
      `import: ${root} is a directory but not an OCI image layout (it has no oci-layout and index.json)`,
    );
  }
  for (const entry of entries) {
    yield* headers(entry.name, entry.type, entry.type === "file" ? entry.size : 0);
    if (entry.type !== "file") continue;
    let sent = 0;
    const path = join(root, entry.name);
    for await (const piece of files.read(path)) {
      sent += piece.byteLength;
      if (sent > entry.size) break;
      yield piece;
    }
    if (sent !== entry.size) throw new InvalidError(`import: ${path} changed while it was being sent`);
    yield padding(entry.size);
  }
  yield new Uint8Array(BLOCK * 2);
}

/** What `images.import(path)` sends: the tarball at `path`, or the OCI layout directory there, tarred. */
export async function localArchive(files: LocalImageFiles, path: string): Promise<AsyncIterable<Uint8Array>> {
  let info: Awaited<ReturnType<LocalImageFiles["stat"]>>;
  try {
    info = await files.stat(path, true);
  } catch (error) {
    throw new InvalidError(`import: cannot read ${path}: ${(error as Error).message}`, { cause: error });
  }
  if (info.type === "directory") return tarDirectory(files, path);
  if (info.type === "file") return files.read(path);
  throw new InvalidError(`import: ${path} is neither an archive nor an OCI image layout directory`);
}
