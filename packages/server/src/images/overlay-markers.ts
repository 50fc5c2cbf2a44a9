/**
 * The marks overlayfs reads in a lower layer, made on disk: a whiteout (a character device 0/0:
 * "this name of the layers below is gone") and an opaque directory (xattr `overlay.opaque=y`:
 * "nothing of the layers below shows in here"). Node has neither mknod nor setxattr, so
 * coreutils' `mknod` makes one whiteout per layer, which is hard-linked to every whiteout name
 * (as overlayfs itself does), and attr's `setfattr` sets the xattrs of a layer's opaque
 * directories in one run, paths escaped in its dump format (any byte, newlines too).
 */
import { execFile } from "node:child_process";
import { chownSync, linkSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * Both namespaces: `trusted.` for an overlay mounted by the host's root, `user.` for one
 * mounted in a user namespace with `userxattr`. Images' own xattrs are never kept, so a layer
 * cannot bring either.
 */
export const OPAQUE_XATTRS = ["trusted.overlay.opaque", "user.overlay.opaque"] as const;

/** ext4 allows 65,000 links to an inode; a new template before that. */
const MAX_LINKS = 60_000;

/** Whiteouts for one layer: a template device in `scratchDir`, linked to each whiteout name. */
export class WhiteoutMaker {
  readonly #template: string;
  readonly #owner: number;
  #links = 0;
  #made = false;

  /** `scratchDir`: on the layer's file system, outside the layer; `owner`: the on-disk id for the image's root. */
  constructor(scratchDir: string, owner: number) {
    this.#template = join(scratchDir, "whiteout");
    this.#owner = owner;
  }

  /** Makes `path` (absolute, its parent a directory the unpacker made, nothing there yet) a whiteout. */
  async make(path: Buffer): Promise<void> {
    if (!this.#made || this.#links >= MAX_LINKS) {
      if (this.#made) unlinkSync(this.#template);
      await run("mknod", ["-m", "0000", "--", this.#template, "c", "0", "0"]);
      chownSync(this.#template, this.#owner, this.#owner);
      this.#made = true;
      this.#links = 0;
    }
    linkSync(this.#template, path);
    this.#links++;
  }

  /** Removes the template (the whiteouts stay). */
  close(): void {
    if (this.#made) unlinkSync(this.#template);
    this.#made = false;
  }
}

/** Marks `dirs` (absolute, each a directory the unpacker made) opaque. */
export async function markOpaque(dirs: readonly Buffer[]): Promise<void> {
  if (dirs.length === 0) return;
  // setfattr --restore reads getfattr's dump: "# file: <path>" (octal escapes), then name="value".
  const dump = dirs
    .map((dir) => `# file: ${escapePath(dir)}\n${OPAQUE_XATTRS.map((name) => `${name}="y"\n`).join("")}\n`)
    .join("");
  await new Promise<void>((resolve, reject) => {
    const child = execFile("setfattr", ["-h", "--restore=-"], (error, _stdout, stderr) => {
      if (error) reject(new Error(`setfattr could not mark opaque directories: ${stderr.trim() || error.message}`));
      else resolve();
    });
    child.stdin?.end(dump);
  });
}

/** A path in getfattr's dump format: every byte but printable ASCII (and the backslash) as \ooo. */
function escapePath(path: Buffer): string {
  let out = "";
  for (const byte of path) {
    out +=
      byte > 0x20 && byte < 0x7f && byte !== 0x5c
        ? String.fromCharCode(byte)
        : `\\${byte.toString(8).padStart(3, "0")}`;
  }
  return out;
}
