import { describe, expect, it } from "vitest";
import { InvalidError, SandboxFilesystemNotFoundError, SandboxFilesystemPathAlreadyExistsError } from "./errors.js";
import {
  insideUtf8Char,
  type OpenMode,
  openSandboxFile,
  parseOpenMode,
  type SandboxFile,
  utf8Advance,
  utf8CharEnd,
} from "./file-handle.js";
import type { SandboxFilesystem } from "./filesystem.js";

const bytes = (...values: number[]) => new Uint8Array(values);
const utf8 = (text: string) => new TextEncoder().encode(text);

describe("parseOpenMode", () => {
  it("reads the kind, + and b in any order", () => {
    expect(parseOpenMode("r")).toEqual({ kind: "r", readable: true, writable: false, binary: false });
    expect(parseOpenMode("w")).toEqual({ kind: "w", readable: false, writable: true, binary: false });
    expect(parseOpenMode("a")).toEqual({ kind: "a", readable: false, writable: true, binary: false });
    expect(parseOpenMode("x")).toEqual({ kind: "x", readable: false, writable: true, binary: false });
    expect(parseOpenMode("r+")).toEqual({ kind: "r", readable: true, writable: true, binary: false });
    expect(parseOpenMode("a+")).toEqual({ kind: "a", readable: true, writable: true, binary: false });
    expect(parseOpenMode("rb")).toEqual({ kind: "r", readable: true, writable: false, binary: true });
    for (const mode of ["wb+", "w+b", "bw+", "+wb"]) {
      expect(parseOpenMode(mode), mode).toEqual({ kind: "w", readable: true, writable: true, binary: true });
    }
  });

  it("rejects anything else with InvalidError", () => {
    for (const mode of ["", "rw", "rr", "r++", "rbb", "rt", "U", "+", "b", "R", " r", undefined, 1, null]) {
      expect(() => parseOpenMode(mode), String(mode)).toThrow(InvalidError);
    }
    expect(() => parseOpenMode("rt")).toThrow(/invalid file mode "rt": unknown character "t"/);
  });
});

describe("UTF-8 positions", () => {
  it("finds where each character ends, the way TextDecoder splits them", () => {
    const text = "aé€😀";
    const data = utf8(text);
    expect(utf8CharEnd(data, 0)).toBe(1);
    expect(utf8CharEnd(data, 1)).toBe(3);
    expect(utf8CharEnd(data, 3)).toBe(6);
    expect(utf8CharEnd(data, 6)).toBe(10);
    expect(utf8Advance(data, 0, 3)).toBe(6);
    expect(utf8Advance(data, 1, 10)).toBe(10);
    expect(utf8Advance(data, 0, 0)).toBe(0);
  });

  it("splits invalid bytes into the same replacement characters as TextDecoder", () => {
    const samples = [
      bytes(0xff, 0x41), // never valid
      bytes(0x80, 0x80, 0x41), // stray continuation bytes
      bytes(0xe2, 0x82, 0x41), // truncated 3-byte sequence, then "A"
      bytes(0xe0, 0x80, 0x80), // overlong
      bytes(0xed, 0xa0, 0x80), // a surrogate
      bytes(0xf4, 0x90, 0x80, 0x80), // above U+10FFFF
      bytes(0xf0, 0x9f, 0x98), // truncated at the end
      bytes(0xc3, 0xa9, 0xa9, 0x41), // "é", a stray continuation byte, "A"
    ];
    const decoder = new TextDecoder("utf-8", { ignoreBOM: true });
    for (const sample of samples) {
      const pieces: string[] = [];
      for (let at = 0; at < sample.length; ) {
        const end = utf8CharEnd(sample, at);
        expect(end, `${sample}`).toBeGreaterThan(at);
        pieces.push(decoder.decode(sample.subarray(at, end)));
        at = end;
      }
      // One code point per step, and together the same text as decoding all at once.
      for (const piece of pieces) expect([...piece], `${sample}`).toHaveLength(1);
      expect(pieces.join(""), `${sample}`).toBe(decoder.decode(sample));
    }
  });

  it("knows which byte offsets fall inside a character", () => {
    const data = utf8("aé€😀");
    const inside = [...Array(data.length + 1).keys()].filter((at) => insideUtf8Char(data, at));
    expect(inside).toEqual([2, 4, 5, 7, 8, 9]);
    // A stray continuation byte is a character of its own.
    expect(insideUtf8Char(bytes(0xc3, 0xa9, 0xa9), 2)).toBe(false);
    expect(insideUtf8Char(bytes(0x80, 0x80), 1)).toBe(false);
  });
});

/** A stand-in for `sb.filesystem` holding files in a Map, recording each write. */
function memoryFilesystem(files: Record<string, string | Uint8Array> = {}) {
  const store = new Map<string, Uint8Array>(
    Object.entries(files).map(([path, data]) => [path, typeof data === "string" ? utf8(data) : data]),
  );
  const writes: string[] = [];
  const fs = {
    async readBytes(path: string) {
      const data = store.get(path);
      if (!data) throw new SandboxFilesystemNotFoundError(`${path}: no such file`);
      return data.slice();
    },
    async writeBytes(data: Uint8Array, path: string) {
      writes.push(path);
      store.set(path, data.slice());
    },
    async stat(path: string) {
      if (!store.has(path)) throw new SandboxFilesystemNotFoundError(`${path}: no such file`);
      return { path };
    },
  };
  const text = (path: string) => {
    const data = store.get(path);
    return data === undefined ? undefined : new TextDecoder().decode(data);
  };
  return { fs: fs as unknown as SandboxFilesystem, store, writes, text };
}

const openText = (fs: SandboxFilesystem, path: string, mode: OpenMode = "r") =>
  openSandboxFile(fs, path, mode) as Promise<SandboxFile<string>>;
const openBinary = (fs: SandboxFilesystem, path: string, mode: OpenMode) =>
  openSandboxFile(fs, path, mode) as Promise<SandboxFile<Uint8Array>>;

describe("SandboxFile (in memory)", () => {
  it("reads characters in text mode and bytes in binary mode, with byte positions", async () => {
    const { fs } = memoryFilesystem({ "/f": "héllo😀\nsecond\nlast" });
    const f = await openText(fs, "/f");
    expect(await f.read(2)).toBe("hé");
    expect(f.tell()).toBe(3);
    expect(await f.read(4)).toBe("llo😀");
    expect(f.tell()).toBe(10);
    expect(await f.readline()).toBe("\n");
    expect(await f.readlines()).toEqual(["second\n", "last"]);
    expect(await f.readline()).toBe("");
    expect(await f.read()).toBe("");
    expect(await f.seek(-4, 2)).toBe(18);
    expect(await f.read()).toBe("last");
    expect(await f.seek(1)).toBe(1);
    await expect(f.seek(2)).rejects.toThrow(/inside a UTF-8 character/);
    expect(f.tell()).toBe(1);
    expect(await f.seek(2, 1)).toBe(3);
    expect(await f.read(1)).toBe("l");

    const b = await openBinary(fs, "/f", "rb");
    expect(Array.from(await b.read(3))).toEqual([0x68, 0xc3, 0xa9]);
    expect(await b.seek(2)).toBe(2); // any offset in binary mode
    expect(Array.from(await b.read(1))).toEqual([0xa9]);
    expect(new TextDecoder().decode(await b.readline())).toBe("llo😀\n");
    expect((await b.readlines()).map((line) => new TextDecoder().decode(line))).toEqual(["second\n", "last"]);
    expect((await b.read()).byteLength).toBe(0);
  });

  it("keeps a byte order mark as a character in text mode", async () => {
    const { fs } = memoryFilesystem({ "/bom": "\ufeffab" });
    const f = await openText(fs, "/bom");
    expect(await f.read(1)).toBe("\ufeff");
    expect(f.tell()).toBe(3);
    await f.seek(0);
    expect(await f.read()).toBe("\ufeffab");
  });

  it("writes in memory and to the filesystem only on flush, once, if something changed", async () => {
    const { fs, writes, text } = memoryFilesystem({ "/f": "0123456789" });
    const f = await openText(fs, "/f", "r+");
    await f.flush();
    expect(writes).toEqual([]); // nothing changed
    await f.seek(2);
    await f.write("ab");
    expect(await f.read(2)).toBe("45");
    expect(text("/f")).toBe("0123456789");
    await f.flush();
    expect(text("/f")).toBe("01ab456789");
    await f.flush();
    expect(writes).toEqual(["/f"]);
    await f.seek(12);
    await f.write("Z");
    await f.close();
    expect(text("/f")).toBe("01ab456789\0\0Z");
    expect(writes).toEqual(["/f", "/f"]);
  });

  it("truncates for w, appends for a, refuses an existing path for x", async () => {
    const { fs, text, writes } = memoryFilesystem({ "/w": "old", "/a": "start", "/x": "here" });
    const w = await openText(fs, "/w", "w");
    expect(text("/w")).toBe("");
    await w.write("new");
    await w.close();
    expect(text("/w")).toBe("new");

    const a = await openText(fs, "/a", "a+");
    expect(a.tell()).toBe(5);
    await a.seek(0);
    expect(await a.read(2)).toBe("st");
    await a.write("+1");
    expect(a.tell()).toBe(7);
    await a.close();
    expect(text("/a")).toBe("start+1");

    const created = await openText(fs, "/new-a", "a");
    expect(text("/new-a")).toBe("");
    await created.close();

    writes.length = 0;
    await expect(openText(fs, "/x", "x")).rejects.toBeInstanceOf(SandboxFilesystemPathAlreadyExistsError);
    expect(writes).toEqual([]);
    expect(text("/x")).toBe("here");
    const x = await openBinary(fs, "/new-x", "xb");
    await x.write(bytes(1, 2));
    await x.close();
    expect(Array.from(await fs.readBytes("/new-x"))).toEqual([1, 2]);
  });

  it("rejects misuse with InvalidError and changes nothing", async () => {
    const { fs, text, writes } = memoryFilesystem({ "/f": "abc" });
    const r = await openText(fs, "/f");
    await expect(r.write("x")).rejects.toThrow(/opened for reading only \(mode "r"\)/);
    const w = await openText(fs, "/g", "w");
    await expect(w.read()).rejects.toThrow(/opened for writing only \(mode "w"\)/);
    await expect(w.readline()).rejects.toBeInstanceOf(InvalidError);
    await expect(w.readlines()).rejects.toBeInstanceOf(InvalidError);
    await expect(w.write(bytes(1) as unknown as string)).rejects.toThrow(/text mode \("w"\) takes a string/);
    const b = await openBinary(fs, "/f", "r+b");
    await expect(b.write("x" as unknown as Uint8Array)).rejects.toThrow(/binary mode \("r\+b"\) takes a Uint8Array/);
    for (const n of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, "2" as unknown as number]) {
      await expect(b.read(n), String(n)).rejects.toBeInstanceOf(InvalidError);
    }
    await expect(b.seek(-1)).rejects.toThrow(/before the start/);
    await expect(b.seek(-4, 2)).rejects.toThrow(/before the start/);
    await expect(b.seek(1.5)).rejects.toBeInstanceOf(InvalidError);
    await expect(b.seek(0, 3 as 0)).rejects.toThrow(/whence must be 0/);
    expect(b.tell()).toBe(0);
    await b.close();
    await b.close(); // twice is fine
    expect(b.closed).toBe(true);
    await expect(b.read()).rejects.toThrow(/closed/);
    await expect(b.write(bytes(1))).rejects.toThrow(/closed/);
    await expect(b.seek(0)).rejects.toThrow(/closed/);
    await expect(b.flush()).rejects.toThrow(/closed/);
    expect(() => b.tell()).toThrow(InvalidError);
    expect(text("/f")).toBe("abc");
    expect(writes).toEqual(["/g"]); // only "w" creating the file at open
    await expect(openText(fs, "relative", "w")).rejects.toBeInstanceOf(InvalidError);
    await expect(openText(fs, "/f", "rw" as OpenMode)).rejects.toBeInstanceOf(InvalidError);
    expect(writes).toEqual(["/g"]);
  });

  it("keeps the handle open when the final flush fails, so close can be retried", async () => {
    const { fs, text } = memoryFilesystem({ "/f": "abc" });
    const f = await openText(fs, "/f", "a");
    await f.write("d");
    const real = fs.writeBytes;
    fs.writeBytes = async () => {
      throw new Error("network down");
    };
    await expect(f.close()).rejects.toThrow("network down");
    expect(f.closed).toBe(false);
    fs.writeBytes = real;
    await f.close();
    expect(text("/f")).toBe("abcd");
  });

  it("closes (and flushes) with await using", async () => {
    const { fs, text } = memoryFilesystem();
    {
      await using f = await openText(fs, "/u", "w");
      await f.write("scoped");
      expect(text("/u")).toBe("");
    }
    expect(text("/u")).toBe("scoped");
  });
});
