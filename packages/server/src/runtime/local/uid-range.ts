/**
 * Host uids for sandboxes: each live sandbox (warm ones included) runs as its own uid, with
 * the same number as its gid, from a range that no host account or subordinate-id grant uses.
 * Per-uid kernel limits (inotify instances, message queues, pipe buffers) and file ownership
 * then separate sandboxes from each other and from every host user.
 */
import { readFile } from "node:fs/promises";

export interface UidRange {
  readonly start: number;
  readonly count: number;
}

/** Highest usable id: bubblewrap writes its uid map with a signed int (above this, EINVAL). */
export const MAX_SANDBOX_UID = 0x7fff_ffff;

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
  if (start + count - 1 > MAX_SANDBOX_UID) return [`${what} ends past ${MAX_SANDBOX_UID}`];
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
 * Hands out ids of the range, one per live sandbox. Freed ids are reused last (the search goes
 * round the range), so a destroyed sandbox's id rests as long as possible before it returns.
 */
export class UidAllocator {
  readonly #range: UidRange;
  readonly #taken = new Set<number>();
  #next = 0;

  constructor(range: UidRange) {
    this.#range = range;
  }

  allocate(): number {
    const { start, count } = this.#range;
    if (this.#taken.size >= count) throw new Error(`all ${count} sandbox uids are in use`);
    for (;;) {
      const uid = start + this.#next;
      this.#next = (this.#next + 1) % count;
      if (!this.#taken.has(uid)) {
        this.#taken.add(uid);
        return uid;
      }
    }
  }

  release(uid: number): void {
    this.#taken.delete(uid);
  }
}
