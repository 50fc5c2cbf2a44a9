// client.images through @sbx/node against the fake: in-process and over a port (HTTP/1.1 and
// HTTP/2, where `import` streams archives over raw HTTP): pulls with progress and credentials,
// paging, the Effect API, and importing an OCI layout directory and a `docker save` tarball.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { layer } from "@sbx/core/effect";
import { writeDockerSave, writeOciLayout } from "@sbx/test-fixtures/image-archives";
import { createFakeServer, type FakeServer } from "@sbx/testing";
import * as Effect from "effect/Effect";
import * as Stream from "effect/Stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Images } from "./effect.js";
import {
  ConnectionError,
  InvalidError,
  NotFoundError,
  QuotaExceededError,
  SandboxClient,
  SandboxError,
  UnsupportedError,
} from "./index.js";

const temp: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), "sbx-images-"));
  temp.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of temp) rmSync(dir, { recursive: true, force: true });
});

/** A fresh OCI image layout directory holding one image named `name`. */
function ociLayoutDir(name: string, files: Record<string, string>, config: Record<string, unknown>): string {
  const dir = tempDir();
  writeOciLayout(tempDir(), dir, name, { files, config });
  return dir;
}

/** A fresh `docker save` tarball of one image tagged `tag`. */
function dockerSaveTarball(tag: string, files: Record<string, string>, config: Record<string, unknown>): string {
  const work = tempDir();
  const tarball = join(work, "image.tar");
  writeDockerSave(work, tarball, tag, { files, config });
  return tarball;
}

type Target = { label: string; make: (fake: FakeServer) => Promise<{ client: SandboxClient; close(): Promise<void> }> };

const TARGETS: Target[] = [
  {
    label: "in-process",
    make: async (fake) => ({ client: new SandboxClient({ transport: fake.transport }), close: async () => {} }),
  },
  ...(["1.1", "2"] as const).map(
    (httpVersion): Target => ({
      label: `over a port, HTTP/${httpVersion}`,
      make: async (fake) => {
        const listener = await fake.listen();
        return { client: new SandboxClient({ endpoint: listener.url, httpVersion }), close: listener.close };
      },
    }),
  ),
];

for (const target of TARGETS) {
  describe(`client.images (${target.label})`, () => {
    const fake = createFakeServer();
    let client: SandboxClient;
    let close: () => Promise<void>;
    beforeAll(async () => {
      ({ client, close } = await target.make(fake));
    });
    afterAll(async () => {
      await client.close();
      await close();
      await fake.close();
    });

    it("fromRegistry reports progress and gives the image; a create from it sees its config", async () => {
      await fake.images.add("python:3.12-slim", {
        env: { PYTHON_VERSION: "3.12.8", PATH: "/usr/local/bin:/usr/bin:/bin" },
        workingDir: "/work/app",
        files: { "/usr/local/bin/python3": "#!fake\n" },
        sizeBytes: 42_000_000,
      });
      const progress: number[] = [];
      const image = await client.images.fromRegistry("python:3.12-slim", {
        onProgress: ({ bytesDone, bytesTotal }) => progress.push(bytesDone / bytesTotal),
      });
      expect(progress.at(-1)).toBe(1);
      expect(image).toMatchObject({
        ref: "docker.io/library/python:3.12-slim",
        sizeBytes: 42_000_000,
        builtin: false,
        config: { workingDir: "/work/app", user: "root", env: { PYTHON_VERSION: "3.12.8" } },
        platform: { os: "linux" },
      });
      const sb = await client.sandboxes.create({ image, env: { EXTRA: "1" } });
      expect(sb.imageId).toBe(image.id);
      const r = await sb.run('echo "$PYTHON_VERSION $EXTRA $PATH"; pwd');
      expect(r.stdout).toBe("3.12.8 1 /usr/local/bin:/usr/bin:/bin\n/work/app\n");
      expect(await sb.filesystem.readText("/usr/local/bin/python3")).toBe("#!fake\n");
      await sb.terminate();
    });

    it("lists every image page by page, newest first; deletes by Image or id", async () => {
      const refs = Array.from({ length: 130 }, (_, i) => `example.test/many/app-${i}:1`);
      const pulled = [];
      for (const ref of refs) {
        await fake.images.add(ref, { env: { N: ref } });
        pulled.push(await client.images.fromRegistry(ref));
      }
      const listed = [];
      for await (const image of client.images.list()) listed.push(image);
      expect(new Set(listed.map((i) => i.id)).size).toBe(listed.length);
      for (const image of pulled) expect(listed.some((i) => i.id === image.id)).toBe(true);
      expect(listed.at(-1)?.id).toBe("im-default");
      for (let i = 1; i < listed.length; i++) {
        expect((listed[i - 1]?.createdAtMs ?? 0) >= (listed[i]?.createdAtMs ?? 0)).toBe(true);
      }
      await client.images.delete(pulled[0] as (typeof pulled)[0]);
      await client.images.delete((pulled[1] as (typeof pulled)[0]).id);
      await expect(client.images.get(refs[0] as string)).rejects.toBeInstanceOf(NotFoundError);
    });

    it("the Effect API pulls, gets, lists and deletes too", async () => {
      await fake.images.add("example.test/effect:1", { user: "7" });
      const program = Effect.gen(function* () {
        const image = yield* Images.pull("example.test/effect:1");
        const got = yield* Images.get(image.id);
        const ids = yield* Stream.runCollect(Images.list().pipe(Stream.map((i) => i.id)));
        yield* Images.delete(image.id);
        const gone = yield* Effect.flip(Images.get(image.id));
        return { image, got, ids: Array.from(ids), gone };
      });
      const { image, got, ids, gone } = await Effect.runPromise(program.pipe(Effect.provide(layer(fake.transport))));
      expect(got.config.user).toBe("7");
      expect(ids).toContain(image.id);
      expect(gone).toBeInstanceOf(NotFoundError);
      const invalid = await Effect.runPromise(
        Effect.flip(Images.pull("Not A Reference")).pipe(Effect.provide(layer(fake.transport))),
      );
      expect(invalid).toBeInstanceOf(InvalidError);
    });

    if (target.label === "in-process") {
      it("import needs raw HTTP to the server: an in-process transport is UnsupportedError", async () => {
        const dir = ociLayoutDir("example.test/nope:1", { "/a": "a" }, {});
        await expect(client.images.import(dir)).rejects.toBeInstanceOf(UnsupportedError);
      });
      return;
    }

    it("imports an OCI layout directory (tarred on the fly) and a docker save tarball; sandboxes start from them", async () => {
      const dir = ociLayoutDir(
        "example.test/imported/oci:1.0",
        { "app/main.py": "print('hi')\n", "etc/motd": "from oci\n" },
        { Env: ["FROM=oci-layout"], WorkingDir: "/app" },
      );
      const oci = await client.images.import(dir);
      expect(oci).toMatchObject({
        refs: ["example.test/imported/oci:1.0"],
        config: { workingDir: "/app", env: { FROM: "oci-layout" } },
      });
      expect(oci.id).toMatch(/^im-[0-9a-f]{20}$/);
      const fromOci = await client.sandboxes.create({ image: "example.test/imported/oci:1.0" });
      expect((await fromOci.run('cat main.py; echo "$FROM"')).stdout).toBe("print('hi')\noci-layout\n");

      const tarball = dockerSaveTarball("example.test/imported/saved:2", { "etc/motd": "saved\n" }, { User: "1234" });
      const saved = await client.images.import(tarball);
      expect(saved.refs).toEqual(["example.test/imported/saved:2"]);
      const fromSave = await client.sandboxes.create({ image: saved });
      expect((await fromSave.run("cat /etc/motd; id -u")).stdout).toBe("saved\n1234\n");
      expect((await client.images.get("example.test/imported/saved:2")).id).toBe(saved.id);
      // Bytes (or a Blob) work as well as a path.
      const again = await client.images.importArchive(new Uint8Array(readFileSync(tarball)));
      expect(again.id).toBe(saved.id);
      const blob = await client.images.importArchive(new Blob([readFileSync(tarball)]));
      expect(blob.id).toBe(saved.id);
      await fromOci.terminate();
      await fromSave.terminate();
    });

    it("a bad archive is refused with the store's typed error; injected failures reach the client typed", async () => {
      const notImage = join(tempDir(), "not-an-image.tar");
      execFileSync("tar", ["-c", "-f", notImage, "-C", tempDir(), "."]);
      await expect(client.images.import(notImage)).rejects.toThrow(/neither an OCI image layout/);
      await expect(client.images.import(tempDir())).rejects.toBeInstanceOf(InvalidError);
      await expect(client.images.import(join(tempDir(), "missing.tar"))).rejects.toThrow(/cannot read/);

      const tarball = dockerSaveTarball("example.test/faults:1", { a: "a" }, {});
      fake.failNext("importImage", { imageError: "quota" });
      await expect(client.images.import(tarball)).rejects.toBeInstanceOf(QuotaExceededError);
      fake.failNext("importImage", { imageError: "digest-mismatch" });
      const mismatch = await client.images.import(tarball).catch((e: unknown) => e);
      expect(mismatch).toBeInstanceOf(SandboxError);
      expect((mismatch as Error).name).toBe("SandboxError");
      const before = fake.calls.filter((c) => c.method === "ImportImage").length;
      fake.failNext("importImage", { code: "unavailable" });
      await expect(client.images.import(tarball)).rejects.toBeInstanceOf(ConnectionError);
      expect(fake.calls.filter((c) => c.method === "ImportImage").length - before).toBe(1); // not resent
      expect((await client.images.import(tarball)).refs).toEqual(["example.test/faults:1"]);
    });

    it("imports a large archive (24 MiB), streamed from the file", async () => {
      const big = "x".repeat(24 * 1024 * 1024);
      const tarball = dockerSaveTarball("example.test/big:1", { "data/big.bin": big }, {});
      // Refused before the server read the body: the client stops sending and reports it.
      fake.failNext("importImage", { code: "unavailable" });
      await expect(client.images.import(tarball)).rejects.toBeInstanceOf(ConnectionError);
      const image = await client.images.import(tarball);
      const sb = await client.sandboxes.create({ image });
      expect((await sb.filesystem.stat("/data/big.bin")).size).toBe(big.length);
      await sb.terminate();
    }, 60_000);
  });
}

describe("client.images without raw HTTP", () => {
  it("a client told rawHttp: false cannot import (UnsupportedError), and says why", async () => {
    const fake = createFakeServer();
    const { url, close } = await fake.listen();
    try {
      await using client = new SandboxClient({ endpoint: url, rawHttp: false });
      const error = await client.images.importArchive(new Uint8Array(10)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UnsupportedError);
      expect((error as Error).message).toMatch(/rawHttp: false/);
    } finally {
      await close();
      await fake.close();
    }
  });
});
