/**
 * `sb.open()`: a Python-style file handle (Modal's `FileIO`) built on `sb.filesystem`. The
 * file is read into memory when it is opened, reads and writes work on that copy, and
 * `flush()` / `close()` write the whole copy back in one atomic `writeBytes`.
 */
import { SANDBOX_FILE } from "./brands.js";
import { InvalidError, SandboxFilesystemNotFoundError, SandboxFilesystemPathAlreadyExistsError } from "./errors.js";
import type { FileCallOptions, SandboxFilesystem } from "./filesystem.js";
import { validateAbsolutePath } from "./validation.js";

type OpenBaseMode = "r" | "w" | "a" | "x";
/** A text mode: `read()` gives strings (UTF-8) and `write()` takes them. */
export type OpenTextMode = OpenBaseMode | `${OpenBaseMode}+`;
/** A binary mode: `read()` gives `Uint8Array`s and `write()` takes them. */
export type OpenBinaryMode = `${OpenBaseMode}b` | `${OpenBaseMode}b+` | `${OpenBaseMode}+b`;
export type OpenMode = OpenTextMode | OpenBinaryMode;

/** What a mode string asks for. */
export interface ParsedOpenMode {
  /** "r" read an existing file, "w" truncate or create, "a" append, "x" create a new file. */
  readonly kind: OpenBaseMode;
  readonly readable: boolean;
  readonly writable: boolean;
  readonly binary: boolean;
}

/**
 * Parses a mode as Python's `open` does: exactly one of "r", "w", "a", "x", optionally "+"
 * (read and write) and "b" (binary), each at most once, in any order.
 */
export function parseOpenMode(mode: unknown): ParsedOpenMode {
  const bad = (why: string) =>
    new InvalidError(
      `invalid file mode ${JSON.stringify(mode)}: ${why} (use "r", "w", "a" or "x", optionally with "+" and/or "b", e.g. "rb", "w+", "r+b")`,
    );
  if (typeof mode !== "string") throw bad("not a string");
  let kind: OpenBaseMode | undefined;
  let plus = false;
  let binary = false;
  for (const char of mode) {
    if (char === "r" || char === "w" || char === "a" || char === "x") {
      if (kind !== undefined) throw bad("more than one of r, w, a, x");
      kind = char;
    } else if (char === "+") {
      if (plus) throw bad('"+" twice');
      plus = true;
    } else if (char === "b") {
      if (binary) throw bad('"b" twice');
      binary = true;
    } else throw bad(`unknown character ${JSON.stringify(char)}`);
  }
  if (kind === undefined) throw bad("none of r, w, a, x");
  return { kind, readable: kind === "r" || plus, writable: kind !== "r" || plus, binary };
}

/**
 * Where the UTF-8 character starting at byte `start` ends (exclusive), as a UTF-8 decoder
 * sees it: an invalid or truncated sequence ends where it stops being valid (at least one
 * byte), and decodes to one U+FFFD, exactly as `TextDecoder` does.
 */
export function utf8CharEnd(bytes: Uint8Array, start: number, end: number = bytes.length): number {
  const lead = bytes[start] ?? 0;
  if (lead < 0x80) return start + 1;
  let more: number;
  let low = 0x80;
  let high = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) more = 1;
  else if (lead >= 0xe0 && lead <= 0xef) {
    more = 2;
    if (lead === 0xe0) low = 0xa0;
    if (lead === 0xed) high = 0x9f; // no surrogates
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    more = 3;
    if (lead === 0xf0) low = 0x90;
    if (lead === 0xf4) high = 0x8f; // nothing above U+10FFFF
  } else return start + 1; // a stray continuation byte, or a byte never used in UTF-8
  let at = start + 1;
  for (let i = 0; i < more; i++, at++) {
    const byte = bytes[at];
    if (at >= end || byte === undefined || byte < (i === 0 ? low : 0x80) || byte > (i === 0 ? high : 0xbf)) return at;
  }
  return at;
}

/** Where `count` characters from byte `start` end (fewer if `end` comes first). */
export function utf8Advance(bytes: Uint8Array, start: number, count: number, end: number = bytes.length): number {
  let at = start;
  for (let i = 0; i < count && at < end; i++) at = utf8CharEnd(bytes, at, end);
  return Math.min(at, end);
}

/** True when byte offset `at` falls inside a UTF-8 character (not at its first byte). */
export function insideUtf8Char(bytes: Uint8Array, at: number, end: number = bytes.length): boolean {
  if (at <= 0 || at >= end) return false;
  const isContinuation = (i: number) => ((bytes[i] ?? 0) & 0xc0) === 0x80;
  if (!isContinuation(at)) return false; // any other byte starts a character
  // The nearest earlier byte that is not a continuation byte starts a character; `at` is
  // inside it when that character reaches past `at` (else `at` is a stray byte of its own).
  for (let start = at - 1; start >= Math.max(0, at - 3); start--) {
    if (!isContinuation(start)) return utf8CharEnd(bytes, start, end) > at;
  }
  return false;
}

const encoder = new TextEncoder();
const EMPTY = new Uint8Array(0);
const NEWLINE = 0x0a;

/** How `seek` counts `offset`: from the start (0), the current position (1) or the end (2). */
export type SeekWhence = 0 | 1 | 2;

/**
 * An open file in a sandbox (Modal's `FileIO`, from `sb.open(path, mode)`), working like a
 * Python file object: `read`, `readline`, `readlines`, `write`, `seek`, `tell`, `flush`,
 * `close`, and `await using` to close it at the end of a scope.
 *
 * The whole file is held in memory: it is read when the handle is opened (modes that read or
 * append), every read and write works on that copy, and `flush()` (and `close()`) writes the
 * whole copy back at once — atomically, keeping the file's mode — if anything changed.
 * Processes in the sandbox see writes only after that, and a change made by someone else
 * between opening and flushing is overwritten. For large files, or anything beyond simple
 * edits, use `sb.filesystem` (`readStream`, `writeStream`, …) instead; Modal itself deprecates
 * `open()` in favour of its filesystem API.
 *
 * Text modes decode and encode UTF-8 (no newline translation); `read(n)` counts characters
 * (code points) there and bytes in binary modes. Positions (`tell`, `seek`) are byte offsets
 * in both, as Python's `tell()` gives for UTF-8 text; in text mode `seek` refuses an offset
 * inside a character. Like the rest of the filesystem API, "w", "a" and "x" create missing
 * parent directories. "x" checks that the path is free and then creates the file (two
 * steps, not one atomic exclusive create).
 *
 * Misuse — reading a handle opened for writing only, writing one opened for reading only, a
 * wrong type or argument, any call after `close()` — rejects with `InvalidError` and changes
 * nothing. `close()` twice is fine; if its final write fails, it rejects and the handle stays
 * open, so `close()` can be retried.
 */
export class SandboxFile<T extends string | Uint8Array = string | Uint8Array> implements AsyncDisposable {
  /** @internal What `instanceof SandboxFile` checks (see lazy-classes.ts). */
  readonly [SANDBOX_FILE] = true;
  /** The path the file was opened with. */
  readonly path: string;
  /** The mode the file was opened with. */
  readonly mode: OpenMode;
  readonly #filesystem: SandboxFilesystem;
  readonly #parsed: ParsedOpenMode;
  #bytes: Uint8Array;
  #size: number;
  #position: number;
  #dirty = false;
  #closed = false;
  #closing: Promise<void> | undefined;
  #flushing: Promise<void> = Promise.resolve();
  readonly #decoder = new TextDecoder("utf-8", { ignoreBOM: true });

  /** @internal */
  constructor(filesystem: SandboxFilesystem, path: string, mode: OpenMode, parsed: ParsedOpenMode, data: Uint8Array) {
    this.#filesystem = filesystem;
    this.path = path;
    this.mode = mode;
    this.#parsed = parsed;
    this.#bytes = data;
    this.#size = data.byteLength;
    this.#position = parsed.kind === "a" ? this.#size : 0;
  }

  /** True once `close()` has been called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Reads `n` characters (text) or bytes (binary) from the current position, or everything
   * to the end when `n` is left out. At the end of the file it gives "" (or an empty array).
   */
  async read(n?: number): Promise<T> {
    this.#check("read", "reading");
    if (n !== undefined && (!Number.isSafeInteger(n) || n < 0)) {
      throw new InvalidError(`read: n must be a non-negative integer (or left out to read to the end), got ${n}`);
    }
    const start = Math.min(this.#position, this.#size);
    let end = this.#size;
    if (n !== undefined) {
      end = this.#parsed.binary ? Math.min(start + n, this.#size) : utf8Advance(this.#bytes, start, n, this.#size);
    }
    return this.#take(start, end);
  }

  /** Reads one line, "\n" included (the last line may lack it); "" (or empty) at the end. */
  async readline(): Promise<T> {
    this.#check("readline", "reading");
    return this.#line();
  }

  /** Reads the remaining lines, each with its "\n" (the last may lack it). */
  async readlines(): Promise<T[]> {
    this.#check("readlines", "reading");
    const lines: T[] = [];
    while (this.#position < this.#size) lines.push(this.#line());
    return lines;
  }

  /**
   * Writes text (text modes) or bytes (binary modes) at the current position, overwriting
   * what is there and extending the file as needed; in "a" modes always at the end. The file
   * in the sandbox changes on `flush()` or `close()`.
   */
  async write(data: T): Promise<void> {
    this.#check("write", "writing");
    let bytes: Uint8Array;
    if (this.#parsed.binary) {
      if (!(data instanceof Uint8Array)) {
        throw new InvalidError(`write: a file opened in binary mode ("${this.mode}") takes a Uint8Array`);
      }
      bytes = data;
    } else {
      if (typeof data !== "string") {
        throw new InvalidError(`write: a file opened in text mode ("${this.mode}") takes a string`);
      }
      bytes = encoder.encode(data);
    }
    if (this.#parsed.kind === "a") this.#position = this.#size;
    if (bytes.byteLength === 0) return;
    const start = this.#position;
    const end = start + bytes.byteLength;
    this.#reserve(end);
    if (start > this.#size) this.#bytes.fill(0, this.#size, start); // a gap after a seek past the end
    this.#bytes.set(bytes, start);
    this.#size = Math.max(this.#size, end);
    this.#position = end;
    this.#dirty = true;
  }

  /**
   * Moves the position to `offset` bytes from the start (`whence` 0, the default), the
   * current position (1) or the end (2), and resolves the new position. Past the end is
   * allowed (a write there fills the gap with zero bytes); before the start is not.
   */
  async seek(offset: number, whence: SeekWhence = 0): Promise<number> {
    this.#check("seek");
    if (!Number.isSafeInteger(offset)) throw new InvalidError(`seek: offset must be an integer, got ${offset}`);
    if (whence !== 0 && whence !== 1 && whence !== 2) {
      throw new InvalidError(`seek: whence must be 0 (start), 1 (current position) or 2 (end), got ${String(whence)}`);
    }
    const base = whence === 0 ? 0 : whence === 1 ? this.#position : this.#size;
    const target = base + offset;
    if (target < 0) {
      throw new InvalidError(`seek: the position would be ${target}, before the start of the file`);
    }
    if (!this.#parsed.binary && insideUtf8Char(this.#bytes, target, this.#size)) {
      throw new InvalidError(
        `seek: byte ${target} is inside a UTF-8 character; in text mode positions must be at character boundaries (open in binary mode for arbitrary offsets)`,
      );
    }
    this.#position = target;
    return target;
  }

  /** The current position, in bytes from the start of the file. */
  tell(): number {
    this.#check("tell");
    return this.#position;
  }

  /** Writes the file back to the sandbox (atomically, keeping its mode) if anything changed. */
  async flush(): Promise<void> {
    this.#check("flush");
    await this.#flush();
  }

  /** Flushes and closes the handle; later calls reject with `InvalidError`. Closing twice is fine. */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    this.#closing = this.#flush().then(
      () => {
        this.#bytes = EMPTY;
        this.#size = 0;
        this.#closing = undefined;
      },
      (error: unknown) => {
        this.#closed = false;
        this.#closing = undefined;
        throw error;
      },
    );
    return this.#closing;
  }

  /** `await using f = await sb.open(...)` closes (and flushes) the file at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #check(method: string, access?: "reading" | "writing"): void {
    if (this.#closed) throw new InvalidError(`${method}: the file ${this.path} is closed`);
    if (access === "reading" && !this.#parsed.readable) {
      throw new InvalidError(
        `${method}: ${this.path} was opened for writing only (mode "${this.mode}"); add "+" to read`,
      );
    }
    if (access === "writing" && !this.#parsed.writable) {
      throw new InvalidError(
        `${method}: ${this.path} was opened for reading only (mode "${this.mode}"); use "r+" to write`,
      );
    }
  }

  #line(): T {
    const start = Math.min(this.#position, this.#size);
    const newline = this.#bytes.subarray(0, this.#size).indexOf(NEWLINE, start);
    return this.#take(start, newline === -1 ? this.#size : newline + 1);
  }

  /** Bytes `start`–`end` as the handle's type, moving the position to `end`. */
  #take(start: number, end: number): T {
    if (end > start) this.#position = end;
    const bytes = this.#bytes.slice(start, end);
    return (this.#parsed.binary ? bytes : this.#decoder.decode(bytes)) as T;
  }

  #reserve(size: number): void {
    if (size <= this.#bytes.byteLength) return;
    const grown = new Uint8Array(Math.max(size, this.#bytes.byteLength * 2, 4096));
    grown.set(this.#bytes.subarray(0, this.#size));
    this.#bytes = grown;
  }

  /** Writes the current contents back, one write at a time, so the last one always wins. */
  #flush(): Promise<void> {
    const run = this.#flushing.then(async () => {
      if (!this.#dirty) return;
      const contents = this.#bytes.slice(0, this.#size);
      this.#dirty = false;
      try {
        await this.#filesystem.writeBytes(contents, this.path);
      } catch (error) {
        this.#dirty = true;
        throw error;
      }
    });
    this.#flushing = run.catch(() => {});
    return run;
  }
}

/** @internal `Sandbox.open`: checks the mode, then reads, creates or truncates the file as it asks. */
export async function openSandboxFile(
  filesystem: SandboxFilesystem,
  path: string,
  mode: OpenMode,
  options: FileCallOptions = {},
): Promise<SandboxFile> {
  validateAbsolutePath(path, "path");
  const parsed = parseOpenMode(mode);
  const call: FileCallOptions = options.signal ? { signal: options.signal } : {};
  let data: Uint8Array = EMPTY;
  switch (parsed.kind) {
    case "r":
      data = await filesystem.readBytes(path, call);
      break;
    case "w":
      await filesystem.writeBytes(EMPTY, path, call);
      break;
    case "a":
      try {
        data = await filesystem.readBytes(path, call);
      } catch (error) {
        if (!(error instanceof SandboxFilesystemNotFoundError)) throw error;
        await filesystem.writeBytes(EMPTY, path, call);
      }
      break;
    case "x": {
      const exists = await filesystem.stat(path, call).then(
        () => true,
        (error: unknown) => {
          if (error instanceof SandboxFilesystemNotFoundError) return false;
          throw error;
        },
      );
      if (exists) throw new SandboxFilesystemPathAlreadyExistsError(`open ${path} (mode "${mode}"): the path exists`);
      await filesystem.writeBytes(EMPTY, path, call);
      break;
    }
  }
  return new SandboxFile(filesystem, path, mode, parsed, data);
}
