// sb.open() file handles against the real server: every mode, reads in text and binary,
// seek/tell, writes that reach the sandbox only on flush (atomically, keeping the file's
// mode), the typed errors at open, and misuse rejected with InvalidError changing nothing.
import * as sdk from "@sbx/node";
import { describe, expect, expectTypeOf, it } from "vitest";
import { errorOf, realServerAvailable, useTestSandbox, useTestServer } from "./test-support.js";

const available = await realServerAvailable();

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);

if (available) {
  describe("sb.open (real server)", () => {
    const server = useTestServer();
    const box = useTestSandbox(server);
    const cat = async (path: string) => (await box.sandbox.run(`cat ${path}`)).stdout;

    it("opens in every mode: r reads, w truncates at open, a appends, x creates, + reads and writes", async () => {
      const sb = box.sandbox;
      await sb.run("mkdir -p /m && printf 'one\\ntwo\\n' > /m/r.txt && printf old-contents > /m/w.txt");

      const r = await sb.open("/m/r.txt");
      expectTypeOf(r).toEqualTypeOf<sdk.SandboxFile<string>>();
      expectTypeOf(await sb.open("/m/r.txt", "r+")).toEqualTypeOf<sdk.SandboxFile<string>>();
      expectTypeOf(await sb.open("/m/r.txt", "r+b")).toEqualTypeOf<sdk.SandboxFile<Uint8Array>>();
      expect(r.mode).toBe("r");
      expect(await r.read()).toBe("one\ntwo\n");
      await r.close();

      // "w" truncates as it opens: the empty file is there before anything is written.
      const w = await sb.open("/m/w.txt", "w");
      expect(await cat("/m/w.txt")).toBe("");
      await w.write("hello");
      await w.write(" world");
      await w.flush();
      expect(await cat("/m/w.txt")).toBe("hello world");
      await w.close();
      const fresh = await sb.open("/m/fresh/w.txt", "w");
      expect((await sb.filesystem.stat("/m/fresh/w.txt")).size).toBe(0);
      await fresh.close();

      // "a": every write goes to the end, wherever the position was moved.
      const a = await sb.open("/m/r.txt", "a");
      expect(a.tell()).toBe(8);
      await a.write("three\n");
      await a.seek(0);
      await a.write("four\n");
      expect(a.tell()).toBe(19);
      await a.close();
      expect(await cat("/m/r.txt")).toBe("one\ntwo\nthree\nfour\n");
      const created = await sb.open("/m/appended.txt", "a");
      expect(await cat("/m/appended.txt")).toBe("");
      await created.write("first");
      await created.close();
      expect(await cat("/m/appended.txt")).toBe("first");

      // "a+": reads from anywhere, writes at the end.
      const ap = await sb.open("/m/appended.txt", "a+");
      expect(await ap.read()).toBe("");
      await ap.seek(0);
      expect(await ap.read(3)).toBe("fir");
      await ap.write("!");
      expect(await ap.read()).toBe("");
      await ap.seek(0);
      expect(await ap.read()).toBe("first!");
      await ap.close();
      expect(await cat("/m/appended.txt")).toBe("first!");

      // "x": a new file only.
      const x = await sb.open("/m/x.txt", "x");
      expect((await sb.filesystem.stat("/m/x.txt")).size).toBe(0);
      await x.write("exclusive");
      await x.close();
      expect(await cat("/m/x.txt")).toBe("exclusive");

      // "r+": overwrite in place, the rest of the file kept.
      const rp = await sb.open("/m/x.txt", "r+");
      expect(await rp.read(2)).toBe("ex");
      await rp.write("XX");
      expect(await rp.read()).toBe("usive");
      await rp.close();
      expect(await cat("/m/x.txt")).toBe("exXXusive");

      // "w+": truncated, then written and read back.
      const wp = await sb.open("/m/x.txt", "w+");
      expect(await wp.read()).toBe("");
      await wp.write("abc");
      await wp.seek(0);
      expect(await wp.read()).toBe("abc");
      await wp.close();
      expect(await cat("/m/x.txt")).toBe("abc");

      // "x+": created, written, read back.
      const xp = await sb.open("/m/xp.txt", "x+");
      await xp.write("xyz");
      expect(await xp.seek(-2, 2)).toBe(1);
      expect(await xp.read()).toBe("yz");
      await xp.close();
      expect(await cat("/m/xp.txt")).toBe("xyz");
    });

    it("reads text by characters (multi-byte UTF-8 included), lines, and byte positions", async () => {
      const sb = box.sandbox;
      await sb.filesystem.writeText("añb€c😀d\nsecond line\nlast", "/t/u.txt");
      const f = await sb.open("/t/u.txt");
      expect(await f.read(3)).toBe("añb");
      expect(f.tell()).toBe(4); // "ñ" is two bytes
      expect(await f.read(4)).toBe("€c😀d");
      expect(f.tell()).toBe(13);
      expect(await f.readline()).toBe("\n");
      expect(await f.readline()).toBe("second line\n");
      expect(await f.readline()).toBe("last");
      expect(await f.readline()).toBe("");
      expect(await f.read()).toBe("");
      expect(await f.read(5)).toBe("");
      expect(await f.seek(0)).toBe(0);
      expect(await f.readlines()).toEqual(["añb€c😀d\n", "second line\n", "last"]);
      expect(await f.readlines()).toEqual([]);
      expect(await f.seek(-2, 2)).toBe(28);
      expect(f.tell()).toBe(28);
      expect(await f.read()).toBe("st");
      await f.seek(4);
      expect(await f.seek(3, 1)).toBe(7);
      expect(await f.read(1)).toBe("c");
      expect(await f.read(0)).toBe("");
      await f.seek(100);
      expect(f.tell()).toBe(100);
      expect(await f.read()).toBe("");
      await f.close();
      expect(f.closed).toBe(true);
    });

    it("reads and writes bytes in binary modes", async () => {
      const sb = box.sandbox;
      const data = new Uint8Array([0, 1, 2, 0x0a, 0xff, 0xfe, 0x0a, 9]);
      const w = await sb.open("/b/data.bin", "wb");
      await w.write(data);
      await w.close();
      expect(Array.from(await sb.filesystem.readBytes("/b/data.bin"))).toEqual(Array.from(data));

      const r = await sb.open("/b/data.bin", "rb");
      expect(Array.from(await r.read(2))).toEqual([0, 1]);
      expect(Array.from(await r.readline())).toEqual([2, 0x0a]);
      expect((await r.readlines()).map((line) => Array.from(line))).toEqual([[0xff, 0xfe, 0x0a], [9]]);
      expect((await r.read()).byteLength).toBe(0);
      expect(await r.seek(-3, 2)).toBe(5);
      expect(Array.from(await r.read(10))).toEqual([0xfe, 0x0a, 9]);
      expect(await r.seek(-7, 1)).toBe(1);
      expect(r.tell()).toBe(1);
      expect(Array.from(await r.read(1))).toEqual([1]);
      await r.close();

      // Binary "r+b": bytes in the middle of a UTF-8 character are fine here.
      await sb.filesystem.writeText("é!", "/b/e.txt");
      const rb = await sb.open("/b/e.txt", "r+b");
      await rb.seek(1);
      expect(Array.from(await rb.read(1))).toEqual([0xa9]);
      await rb.seek(0);
      await rb.write(new TextEncoder().encode("e\u0301"));
      await rb.close();
      expect(await cat("/b/e.txt")).toBe("e\u0301");

      // "ab", "xb+", "w+b", "a+b".
      const ab = await sb.open("/b/data.bin", "ab");
      await ab.write(new Uint8Array([10, 11]));
      await ab.close();
      expect(Array.from(await sb.read("/b/data.bin")).slice(-3)).toEqual([9, 10, 11]);
      const xb = await sb.open("/b/new.bin", "xb+");
      await xb.write(new Uint8Array([5, 6, 7]));
      await xb.seek(1);
      expect(Array.from(await xb.read())).toEqual([6, 7]);
      await xb.close();
      const wb = await sb.open("/b/new.bin", "w+b");
      expect((await wb.read()).byteLength).toBe(0);
      await wb.write(new Uint8Array([1]));
      await wb.close();
      const apb = await sb.open("/b/new.bin", "a+b");
      await apb.write(new Uint8Array([2]));
      await apb.seek(0);
      expect(Array.from(await apb.read())).toEqual([1, 2]);
      await apb.close();
      expect(Array.from(await sb.read("/b/new.bin"))).toEqual([1, 2]);
    });

    it("writes reach the sandbox on flush, not before, in one atomic replace keeping the file's mode", async () => {
      const sb = box.sandbox;
      await sb.run("mkdir -p /f && printf 'original\\n' > /f/keep.txt && chmod 750 /f/keep.txt");
      const f = await sb.open("/f/keep.txt", "r+");
      await f.seek(0, 2);
      await f.write("appended\n");
      expect(await cat("/f/keep.txt")).toBe("original\n"); // not yet
      await f.flush();
      expect(await cat("/f/keep.txt")).toBe("original\nappended\n");
      await f.write("more\n");
      expect(await cat("/f/keep.txt")).toBe("original\nappended\n");
      await f.close();
      expect(await cat("/f/keep.txt")).toBe("original\nappended\nmore\n");
      expect((await sb.filesystem.stat("/f/keep.txt")).mode).toBe(0o750);
      for (const mode of ["w", "a"] as const) {
        const again = await sb.open("/f/keep.txt", mode);
        await again.write("x");
        await again.close();
        expect((await sb.filesystem.stat("/f/keep.txt")).mode, mode).toBe(0o750);
      }
      expect(await cat("/f/keep.txt")).toBe("xx");

      // A process watching the file's size while a large flush lands sees the old size or the
      // new one, never a partly written file; and nothing is left beside it.
      const oldSize = 1000;
      await sb.filesystem.writeBytes(new Uint8Array(oldSize).fill(97), "/f/big.bin");
      const big = await sb.open("/f/big.bin", "r+b");
      await big.seek(0, 2);
      await big.write(new Uint8Array(9 * 1024 * 1024).fill(98));
      const newSize = oldSize + 9 * 1024 * 1024;
      const watcher = await sb.run(
        `i=0; while [ $i -lt 200000 ]; do s=$(stat -c %s /f/big.bin); echo $s; [ $i = 0 ] && touch /f/started; [ "$s" = ${newSize} ] && break; i=$((i+1)); done`,
        { wait: false, timeoutMs: 0 },
      );
      while (!(await sb.ls("/f")).includes("started")) await new Promise((r) => setTimeout(r, 20));
      expect((await sb.filesystem.stat("/f/big.bin")).size).toBe(oldSize);
      await big.close();
      const sizes = new Set((await watcher.wait()).stdout.trim().split("\n").map(Number));
      expect(sizes).toEqual(new Set([oldSize, newSize]));
      expect(await sb.ls("/f")).toEqual(["big.bin", "keep.txt", "started"]);
      const after = await sb.filesystem.readBytes("/f/big.bin");
      expect(after.byteLength).toBe(newSize);
      expect([after[0], after[oldSize - 1], after[oldSize], after[newSize - 1]]).toEqual([97, 97, 98, 98]);
    }, 60_000);

    it("fails at open with the typed error and changes nothing", async () => {
      const sb = box.sandbox;
      await sb.run("mkdir -p /e/dir && printf kept > /e/file");
      const cases: [string, () => Promise<unknown>, new (...args: never[]) => Error][] = [
        ['"r" on a missing file', () => sb.open("/e/missing"), sdk.SandboxFilesystemNotFoundError],
        ['"r+" on a missing file', () => sb.open("/e/missing", "r+"), sdk.SandboxFilesystemNotFoundError],
        ['"rb" on a missing file', () => sb.open("/e/missing", "rb"), sdk.SandboxFilesystemNotFoundError],
        ['"r" on a directory', () => sb.open("/e/dir"), sdk.SandboxFilesystemIsADirectoryError],
        ['"w" on a directory', () => sb.open("/e/dir", "w"), sdk.SandboxFilesystemIsADirectoryError],
        ['"a" on a directory', () => sb.open("/e/dir", "a"), sdk.SandboxFilesystemIsADirectoryError],
        ['"r+b" on a directory', () => sb.open("/e/dir", "r+b"), sdk.SandboxFilesystemIsADirectoryError],
        ['"x" on an existing file', () => sb.open("/e/file", "x"), sdk.SandboxFilesystemPathAlreadyExistsError],
        ['"x+" on an existing file', () => sb.open("/e/file", "x+"), sdk.SandboxFilesystemPathAlreadyExistsError],
        ['"xb" on a directory', () => sb.open("/e/dir", "xb"), sdk.SandboxFilesystemPathAlreadyExistsError],
        ["a relative path", () => sb.open("e/file", "w"), sdk.InvalidError],
        ["an unknown mode", () => sb.open("/e/file", "rw" as sdk.OpenMode), sdk.InvalidError],
        ['a text-mode "t"', () => sb.open("/e/new", "wt" as sdk.OpenMode), sdk.InvalidError],
        ['"w" with an aborted signal', () => sb.open("/e/new", "w", { signal: AbortSignal.abort() }), sdk.AbortedError],
      ];
      for (const [what, attempt, type] of cases) {
        const error = await errorOf(attempt());
        expect(error, what).toBeInstanceOf(type);
        expect(error, what).toBeInstanceOf(sdk.SandboxError);
        if (error instanceof sdk.SandboxFilesystemError) expect(error.message, what).toContain("/e/");
      }
      expect((await sb.run("ls -A /e /e/dir; cat /e/file")).stdout).toBe("/e:\ndir\nfile\n\n/e/dir:\nkept");
    });

    it("rejects misuse with InvalidError and changes nothing", async () => {
      const sb = box.sandbox;
      await sb.run("mkdir -p /i && printf 'abc\\n' > /i/f.txt");
      const before = (await sb.filesystem.stat("/i/f.txt")).mtimeMs;
      const r = await sb.open("/i/f.txt", "r");
      const wa = await sb.open("/i/f.txt", "a");
      const rb = await sb.open("/i/f.txt", "r+b");
      const rt = await sb.open("/i/f.txt", "r+");
      await sb.filesystem.writeText("añ\n", "/i/u.txt");
      const u = await sb.open("/i/u.txt", "r+");
      const cases: [string, () => unknown, RegExp][] = [
        ["write a read-only handle", () => r.write("x"), /opened for reading only \(mode "r"\)/],
        ["read a write-only handle", () => wa.read(), /opened for writing only \(mode "a"\)/],
        ["readline a write-only handle", () => wa.readline(), /opened for writing only/],
        ["readlines a write-only handle", () => wa.readlines(), /opened for writing only/],
        ["a string to a binary handle", () => rb.write("x" as unknown as Uint8Array), /binary mode .* Uint8Array/],
        ["bytes to a text handle", () => rt.write(new Uint8Array([1]) as unknown as string), /text mode .* string/],
        ["read(-1)", () => rt.read(-1), /non-negative integer/],
        ["read(1.5)", () => rb.read(1.5), /non-negative integer/],
        ["seek before the start", () => rt.seek(-1), /before the start/],
        ["seek before the start from the end", () => rb.seek(-5, 2), /before the start/],
        ["seek with a bad whence", () => rt.seek(0, 3 as 0), /whence/],
        ["seek to a fraction", () => rb.seek(0.5), /integer/],
        ["seek inside a character (text)", () => u.seek(2), /inside a UTF-8 character/],
      ];
      for (const [what, attempt, message] of cases) {
        const error = await errorOf(Promise.resolve().then(attempt));
        expect(error, what).toBeInstanceOf(sdk.InvalidError);
        expect((error as Error).message, what).toMatch(message);
      }
      expect([r.tell(), wa.tell(), rb.tell(), rt.tell(), u.tell()]).toEqual([0, 4, 0, 0, 0]);
      for (const handle of [r, wa, rb, rt, u]) await handle.close();
      expect(await cat("/i/f.txt")).toBe("abc\n");
      expect(await cat("/i/u.txt")).toBe("añ\n");
      expect((await sb.filesystem.stat("/i/f.txt")).mtimeMs).toBe(before);

      // After close: every call rejects (closing again is fine).
      const closed = await sb.open("/i/f.txt", "r+");
      await closed.close();
      await closed.close();
      const afterClose: [string, () => unknown][] = [
        ["read", () => closed.read()],
        ["readline", () => closed.readline()],
        ["readlines", () => closed.readlines()],
        ["write", () => closed.write("x")],
        ["seek", () => closed.seek(0)],
        ["tell", () => closed.tell()],
        ["flush", () => closed.flush()],
      ];
      for (const [what, attempt] of afterClose) {
        const error = await errorOf(Promise.resolve().then(attempt));
        expect(error, what).toBeInstanceOf(sdk.InvalidError);
        expect((error as Error).message, what).toMatch(/closed/);
      }
      expect(await cat("/i/f.txt")).toBe("abc\n");
      expect(await sb.ls("/i")).toEqual(["f.txt", "u.txt"]);
    });

    it("closes and flushes with await using", async () => {
      const sb = box.sandbox;
      {
        await using f = await sb.open("/s/scoped.txt", "w");
        await f.write("scoped");
        expect(await cat("/s/scoped.txt")).toBe("");
      }
      expect(await cat("/s/scoped.txt")).toBe("scoped");
      const b = await sb.open("/s/scoped.txt", "rb");
      expect(text(await b.read())).toBe("scoped");
      await b.close();
    });
  });
}
