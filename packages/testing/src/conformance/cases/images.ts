import { deepEqual, equal, match, ok, rejects } from "../assert.js";
import type { Harness, TestApi, TestImageSource } from "../target.js";

const T = 30_000;
const UNKNOWN_ID = `im-${"0".repeat(20)}`;

/** The registry host of a reference the image source gave ("registry.sbx.test" of "registry.sbx.test/x:1"). */
const registryOf = (reference: string) => reference.slice(0, reference.indexOf("/"));
/** The reference with another tag. */
const withTag = (reference: string, tag: string) => `${reference.slice(0, reference.lastIndexOf(":"))}:${tag}`;

export function imageCases(t: TestApi, h: Harness): void {
  const { sdk } = h;
  const fake = h.target.fake; // a capability: only the fake records calls and takes injected faults

  /** The target's image source; a case that needs one runs only where there is one. */
  const source = (): TestImageSource => {
    if (!h.images) throw new Error("this target has no test image source");
    return h.images;
  };
  const withImages = (name: string, fn: () => Promise<void>) => {
    if (h.images) t.it(name, fn, T);
  };

  t.describe("images", () => {
    t.it(
      "a malformed reference is InvalidError before any request, from fromRegistry and from create",
      async () => {
        const client = h.client();
        const before = fake?.calls.length;
        for (const reference of ["Python:3.12", "python:", "", "a b", "-x/y"]) {
          const error = await rejects(() => client.images.fromRegistry(reference), sdk.InvalidError);
          match(error.message, /invalid image reference/);
        }
        await rejects(
          () => client.sandboxes.create({ app: h.app, image: "UPPER/case:1" }),
          sdk.InvalidError,
          /invalid image reference/,
        );
        await rejects(() => client.images.get("not a reference"), sdk.InvalidError);
        await rejects(() => client.images.delete("python:3.12"), sdk.InvalidError, /invalid image id/);
        if (fake) equal(fake.calls.length, before, "no request may be sent for invalid input");
      },
      T,
    );

    t.it(
      "the default image is listed and can be got; sandboxes start from it by default, by id or as an Image; it cannot be deleted",
      async () => {
        const client = h.client();
        const listed = [];
        for await (const image of client.images.list()) listed.push(image);
        const fromList = listed.find((image) => image.id === "im-default");
        ok(fromList, `im-default is listed: ${JSON.stringify(listed.map((i) => i.id))}`);
        equal(fromList.builtin, true);
        const image = await client.images.get("im-default");
        equal(image.id, "im-default");
        equal(image.builtin, true);
        equal(image.config.workingDir, "/");
        equal(image.config.env.HOME, "/root");
        const plain = await h.sandbox({ image: undefined }); // names no image, whatever the run's image
        equal(plain.imageId, "im-default");
        for (const option of ["im-default", image]) {
          const sb = await h.sandbox({ image: option });
          equal(sb.imageId, "im-default");
          const p = await sb.exec(["sh", "-c", 'echo "$HOME"']);
          equal(await p.stdout.readText(), "/root\n");
        }
        await rejects(() => client.images.delete(image), sdk.FailedPreconditionError, /default image/);
        equal((await client.images.get("im-default")).id, "im-default");
      },
      T,
    );

    t.it(
      "an unknown image id is NotFoundError, from get, delete and create",
      async () => {
        const client = h.client();
        await rejects(() => client.images.get(UNKNOWN_ID), sdk.NotFoundError, new RegExp(UNKNOWN_ID));
        await rejects(() => client.images.delete(UNKNOWN_ID), sdk.NotFoundError);
        await rejects(() => client.sandboxes.create({ app: h.app, image: UNKNOWN_ID }), sdk.NotFoundError);
      },
      T,
    );

    withImages(
      "fromRegistry pulls an image once: id, ref, digest, size, progress; get and list show it; delete removes it",
      async () => {
        const client = h.client();
        const reference = await source().publish("pull", {
          env: { FROM_IMAGE: "yes" },
          files: { "/etc/motd": "hi\n" },
        });
        const progress: { bytesDone: number; bytesTotal: number }[] = [];
        const image = await client.images.fromRegistry(reference, { onProgress: (p) => progress.push(p) });
        match(image.id, /^im-[0-9a-f]{20}$/);
        equal(image.ref, reference);
        deepEqual(image.refs, [reference]);
        match(image.digest, /^sha256:[0-9a-f]{64}$/);
        ok(image.sizeBytes > 0, `sizeBytes ${image.sizeBytes}`);
        equal(image.builtin, false);
        equal(image.config.env.FROM_IMAGE, "yes");
        ok(progress.length > 0, "progress was reported");
        const last = progress[progress.length - 1];
        equal(last?.bytesDone, last?.bytesTotal, "the last progress report is the whole image");

        const again = await client.images.fromRegistry(reference);
        equal(again.id, image.id);
        equal(again.digest, image.digest);
        for (const selector of [image.id, reference, image.digest]) {
          equal((await client.images.get(selector)).id, image.id, `get(${selector})`);
        }
        const ids = [];
        for await (const listed of client.images.list()) ids.push(listed.id);
        ok(ids.includes(image.id), "the pulled image is listed");
        ok(ids.indexOf(image.id) < ids.indexOf("im-default"), "newest first: the default image is older than any pull");

        await client.images.delete(image);
        await rejects(() => client.images.get(image.id), sdk.NotFoundError);
        const after = [];
        for await (const listed of client.images.list()) after.push(listed.id);
        ok(!after.includes(image.id), "a deleted image is not listed");
      },
    );

    withImages(
      "a sandbox from an image gets its Env, WorkingDir and User; the sandbox's env and workdir, then a call's, win",
      async () => {
        const reference = await source().publish("config", {
          env: { GREETING: "hello", SHARED: "image" },
          workingDir: "/srv/app",
          user: "1234",
        });
        // Not pulled first: the create pulls it, as `docker run` does.
        const sb = await h.sandbox({ image: reference });
        match(sb.imageId ?? "", /^im-[0-9a-f]{20}$/);
        const script = ["sh", "-c", 'echo "$GREETING $SHARED"; pwd; id -u'];
        const p = await sb.exec(script);
        equal(await p.stdout.readText(), "hello image\n/srv/app\n1234\n");
        equal(await p.wait(), 0);
        const call = await sb.exec(script, { env: { SHARED: "call" }, workdir: "/" });
        equal(await call.stdout.readText(), "hello call\n/\n1234\n");

        const image = await h.client().images.get(reference);
        equal(image.id, sb.imageId);
        deepEqual(image.config.env, { GREETING: "hello", SHARED: "image" });
        equal(image.config.workingDir, "/srv/app");
        equal(image.config.user, "1234");
        const overridden = await h.sandbox({ image, env: { SHARED: "sandbox" }, workdir: "/tmp" });
        const q = await overridden.exec(script);
        equal(await q.stdout.readText(), "hello sandbox\n/tmp\n1234\n");
      },
    );

    withImages(
      "an unknown tag or repository is NotFoundError naming it, from fromRegistry and from create",
      async () => {
        const client = h.client();
        const reference = await source().publish("tags", {});
        const missingTag = withTag(reference, "no-such-tag");
        await rejects(() => client.images.fromRegistry(missingTag), sdk.NotFoundError, /no-such-tag/);
        await rejects(
          () => client.sandboxes.create({ app: h.app, image: missingTag }),
          sdk.NotFoundError,
          /no-such-tag/,
        );
        const missingRepository = `${registryOf(reference)}/conformance/nobody-has-this-${Math.random().toString(36).slice(2, 8)}:1`;
        await rejects(() => client.images.fromRegistry(missingRepository), sdk.NotFoundError, /nobody-has-this/);
      },
    );

    withImages(
      "a private image needs its credentials: none or wrong ones are AuthenticationError naming the registry, not the sbx token",
      async () => {
        const client = h.client();
        const credentials = { username: "conformance", password: `pw-${Math.random().toString(36).slice(2)}` };
        const reference = await source().publish("private", { env: { SECRET_IMAGE: "1" }, credentials });
        const registry = registryOf(reference);
        for (const given of [undefined, { username: "conformance", password: "wrong" }]) {
          const error = await rejects(
            () => client.images.fromRegistry(reference, given ? { credentials: given } : {}),
            sdk.AuthenticationError,
          );
          equal(error.registry, registry, "the error names the registry that refused");
          ok(error.message.includes(registry), `the message names the registry: ${error.message}`);
          ok(!error.message.includes(credentials.password), "the message never shows a password");
        }
        const image = await client.images.fromRegistry(reference, { credentials });
        equal(image.config.env.SECRET_IMAGE, "1");
        // The client's own token still works: the registry's refusal was not taken for it.
        const sb = await h.sandbox({ image });
        const p = await sb.exec(["sh", "-c", 'echo "$SECRET_IMAGE"']);
        equal(await p.stdout.readText(), "1\n");
      },
    );

    withImages("an image a running sandbox uses cannot be deleted until the sandbox ends", async () => {
      const client = h.client();
      const image = await client.images.fromRegistry(await source().publish("in-use", {}));
      const sb = await h.sandbox({ image });
      const error = await rejects(() => client.images.delete(image.id), sdk.FailedPreconditionError);
      ok(error.message.includes(sb.id), `the error names the sandbox: ${error.message}`);
      await sb.terminate({ wait: true });
      await client.images.delete(image.id);
      await rejects(() => client.images.get(image.id), sdk.NotFoundError);
    });
  });

  if (!fake) return;
  t.describe("images (fake server faults)", () => {
    t.it(
      "image store failures reach the client typed: an unreachable registry, a digest mismatch, a full disk",
      async () => {
        const client = h.client();
        const reference = await source().publish("faults", {});
        const registry = registryOf(reference);
        const pulls = () => fake.calls.filter((c) => c.method === "PullImage").length;

        fake.failNext("pullImage", { imageError: "connection" });
        let before = pulls();
        const unreachable = await rejects(() => client.images.fromRegistry(reference), sdk.ConnectionError);
        equal(unreachable.registry, registry, "the error names the registry");
        ok(unreachable.message.includes(registry), unreachable.message);
        equal(pulls() - before, 1, "the client does not retry a registry's failure (the server's store does)");

        fake.failNext("pullImage", { imageError: "digest-mismatch" });
        const mismatch = await rejects(() => client.images.fromRegistry(reference), sdk.SandboxError, /digest/);
        equal(mismatch.name, "SandboxError");

        fake.failNext("pullImage", { imageError: "quota" });
        await rejects(() => client.sandboxes.create({ app: h.app, image: reference }), sdk.QuotaExceededError);

        fake.failNext("pullImage", { imageError: "unsupported", message: "no manifest for linux/riscv64" });
        await rejects(() => client.images.fromRegistry(reference), sdk.UnsupportedError, /riscv64/);

        before = pulls();
        fake.failNext("pullImage", { code: "unavailable" });
        const image = await client.images.fromRegistry(reference);
        equal(pulls() - before, 2, "a transient failure of the call itself is retried");
        match(image.id, /^im-/);
      },
      T,
    );
  });
}
