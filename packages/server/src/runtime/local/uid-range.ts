/**
 * Host ids for sandboxes, in blocks. Each live sandbox (warm ones included) gets a block of
 * 65,536 host ids of its own, `BASE .. BASE+65535`, from a range that no host account, group
 * or subordinate-id grant uses: its user namespace maps its ids 0..65535 onto them (`0 BASE
 * 65536`), so a file of uid 1234 in its image is host uid BASE+1234, and its root is BASE.
 * Per-uid kernel limits (inotify instances, message queues, pipe buffers) and file ownership
 * then separate sandboxes from each other and from every host user.
 *
 * The image store keeps layer files owned by one more block of its own (`layerIdBase`: image
 * id u is stored as layerIdBase+u), which no process ever runs as; a sandbox sees those files
 * through an idmapped mount (layerIdBase+u → BASE+u, see root-mount.ts). The two ranges must
 * not overlap (checked at start-up, `sandboxRangeProblems`).
 */
import { readdir, readFile } from "node:fs/promises";

export interface UidRange {
  readonly start: number;
  readonly count: number;
}

/** Ids a sandbox has: uid/gid 0..65535 of its user namespace, the whole 16-bit space images use. */
export const ID_BLOCK = 65_536;

/** Highest usable host id: (uid_t)-1 is not an id. The server (root) writes the maps, so ids above 2^31 work. */
export const MAX_HOST_ID = 0xffff_fffe;

/**
 * The on-disk owner of an image's uid/gid 0 in the image store (image id u is stored as this
 * plus u): a block below the default sandbox ranges (2^31 and up), shared by the store and the
 * runtime (which idmaps it).
 */
export const DEFAULT_LAYER_ID_BASE = 1_900_000_000;

/** Blocks in the default sandbox range: that many sandboxes (warm ones included) at once. */
export const DEFAULT_SANDBOX_BLOCKS = 1024;

/** Default ranges one host has room for: 1,024 blocks each, from 2^31 up to MAX_HOST_ID. */
export const DEFAULT_RANGE_SLOTS = 31;

/** The default range in `slot` (0 to 30): 1,024 blocks above 2^31. Ends below MAX_HOST_ID. */
export function defaultSandboxRangeAt(slot: number): UidRange {
  const count = DEFAULT_SANDBOX_BLOCKS * ID_BLOCK;
  return { start: 2 ** 31 + slot * count, count };
}

/**
 * The slot a runtime whose data dir hashes to `instance` (hex) tries first, so that two
 * servers on one machine rarely even meet; the runtime claims its range host-wide, and moves
 * on to the next free slot when another server holds this one (id-range-claim.ts).
 */
export function defaultRangeSlot(instance: string): number {
  return Number.parseInt(instance.slice(0, 6), 16) % DEFAULT_RANGE_SLOTS;
}

/** The default range a runtime whose data dir hashes to `instance` tries first. */
export function defaultSandboxRange(instance: string): UidRange {
  return defaultSandboxRangeAt(defaultRangeSlot(instance));
}

/** Files naming ids the host already hands out (accounts, groups, subordinate ranges). */
const ID_FILES = ["/etc/passwd", "/etc/group", "/etc/subuid", "/etc/subgid"] as const;

/**
 * What is wrong with `range` on this host (empty when it can be used). `what` names the range
 * in messages: sandbox uids, or the ids the image store gives layer files.
 */
export async function uidRangeProblems(
  range: UidRange,
  files: readonly string[] = ID_FILES,
  what = "the sandbox uid range",
): Promise<string[]> {
  const { start, count } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(count) || start < 1 || count < 1) {
    return [`${what} must be positive integers, got start ${start}, count ${count}`];
  }
  if (start + count - 1 > MAX_HOST_ID) return [`${what} ends past ${MAX_HOST_ID}`];
  const problems: string[] = [];
  for (const file of files) {
    const text = await readFile(file, "utf8").catch(() => "");
    for (const [first, size] of idsIn(file, text)) {
      if (first < start + count && start < first + size) {
        problems.push(
          `${what} ${start}-${start + count - 1} overlaps ids in ${file} (${first}${size > 1 ? `-${first + size - 1}` : ""}): choose another range`,
        );
        break;
      }
    }
  }
  return problems;
}

/**
 * What is wrong with the sandboxes' range: a whole number of blocks, clear of host ids, and
 * clear of the image store's layer ids (`layerIdBase` and its block); and with the layer ids
 * themselves, clear of host ids too: every sandbox disk (the default image's included) stores
 * its owners as `layerIdBase + u`, with or without an image store.
 */
export async function sandboxRangeProblems(
  range: UidRange,
  layerIdBase: number,
  files: readonly string[] = ID_FILES,
): Promise<string[]> {
  const { start, count } = range;
  if (Number.isSafeInteger(count) && count > 0 && count % ID_BLOCK !== 0) {
    return [`the sandbox uid range must be a whole number of blocks of ${ID_BLOCK} ids, got ${count}`];
  }
  const problems = await uidRangeProblems(range, files);
  problems.push(...(await uidRangeProblems({ start: layerIdBase, count: ID_BLOCK }, files, "the layer id block")));
  if (start < layerIdBase + ID_BLOCK && layerIdBase < start + count) {
    problems.push(
      `the sandbox uid range ${start}-${start + count - 1} overlaps the image store's layer ids ${layerIdBase}-${layerIdBase + ID_BLOCK - 1}: choose another range or layerIdBase`,
    );
  }
  return problems;
}

/** [first id, count] pairs a file names: field 3 of passwd/group, fields 2-3 of subuid/subgid. */
function* idsIn(file: string, text: string): Generator<[number, number]> {
  const subordinate = file.endsWith("subuid") || file.endsWith("subgid");
  for (const line of text.split("\n")) {
    const fields = line.trim().split(":");
    if (fields.length < 3 || line.trim().startsWith("#")) continue;
    const first = Number(subordinate ? fields[1] : fields[2]);
    const size = subordinate ? Number(fields[2]) : 1;
    if (Number.isSafeInteger(first) && Number.isSafeInteger(size) && size > 0) yield [first, size];
  }
}

/**
 * The blocks of `range` (by first id) that some process runs as: one of its real, effective,
 * saved or file uids or gids is in the block (read from `/proc/<pid>/status`). Such a process
 * was left by an earlier holder of the range (a server that crashed, or a sandbox whose
 * processes outlived its destroy): the range's claim ended with its holder, not with them.
 */
export async function busyIdBlocks(range: UidRange, proc = "/proc"): Promise<Set<number>> {
  const busy = new Set<number>();
  const pids = (await readdir(proc).catch(() => [] as string[])).filter((name) => /^\d+$/.test(name));
  for (const pid of pids) {
    const status = await readFile(`${proc}/${pid}/status`, "utf8").catch(() => ""); // (gone meanwhile)
    for (const line of status.split("\n")) {
      if (!line.startsWith("Uid:") && !line.startsWith("Gid:")) continue;
      for (const id of line.slice(4).trim().split(/\s+/).map(Number)) {
        if (id >= range.start && id < range.start + range.count) {
          busy.add(range.start + Math.floor((id - range.start) / ID_BLOCK) * ID_BLOCK);
        }
      }
    }
  }
  return busy;
}

/**
 * Hands out the range's blocks, one per live sandbox, by its first id (`BASE`). Freed blocks
 * are reused last (the search goes round the range), so a destroyed sandbox's ids rest as long
 * as possible before they return. Blocks held back (see busyIdBlocks) are never handed out.
 */
export class IdBlockAllocator {
  readonly #start: number;
  readonly #blocks: number;
  readonly #taken = new Set<number>();
  #next = 0;

  constructor(range: UidRange, heldBack: Iterable<number> = []) {
    if (range.count % ID_BLOCK !== 0 || range.count < ID_BLOCK) {
      throw new Error(`a sandbox uid range is a whole number of blocks of ${ID_BLOCK} ids, got ${range.count}`);
    }
    this.#start = range.start;
    this.#blocks = range.count / ID_BLOCK;
    for (const base of heldBack) this.#taken.add(base);
  }

  /** The first host id of a free block (the sandbox's root). */
  allocate(): number {
    if (this.#taken.size >= this.#blocks) {
      throw new Error(`all ${this.#blocks} sandbox id blocks are in use`);
    }
    for (;;) {
      const base = this.#start + this.#next * ID_BLOCK;
      this.#next = (this.#next + 1) % this.#blocks;
      if (!this.#taken.has(base)) {
        this.#taken.add(base);
        return base;
      }
    }
  }

  release(base: number): void {
    this.#taken.delete(base);
  }
}
