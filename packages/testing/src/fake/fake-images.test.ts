// The fake's images as a sandbox sees them: its files (writable, /usr included), its WorkingDir
// made when missing, and its User as `whoami` and `id` report it from the image's /etc/passwd.
import { AuthenticationError, NotFoundError, SandboxClient } from "@sbx/core";
import { afterAll, describe, expect, it } from "vitest";
import { createFakeServer } from "../index.js";

const fake = createFakeServer();
const client = new SandboxClient({ transport: fake.transport });
afterAll(async () => {
  await client.close();
  await fake.close();
});

const PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:App:/home/app:/bin/sh\n";
const GROUP = "root:x:0:\napp:x:1000:\nstaff:x:50:\n";

describe("the fake's images", () => {
  it("a sandbox holds the image's files, its whole root writable; the WorkingDir is made if missing", async () => {
    await fake.images.add("example.test/files:1", {
      workingDir: "/srv/app",
      files: { "/usr/bin/tool": { data: "#!/bin/sh\n", mode: 0o755 }, "/etc/motd": "welcome\n" },
    });
    const sb = await client.sandboxes.create({ image: "example.test/files:1" });
    expect(await sb.filesystem.readText("/etc/motd")).toBe("welcome\n");
    expect((await sb.filesystem.stat("/usr/bin/tool")).mode).toBe(0o755);
    expect((await sb.filesystem.stat("/srv/app")).type).toBe("directory");
    await sb.filesystem.writeText("mine", "/usr/bin/other"); // not the default image's read-only /usr
    const r = await sb.run("pwd; cat /etc/motd");
    expect(r.stdout).toBe("/srv/app\nwelcome\n");
    // The default image's sandboxes are as they were.
    const plain = await client.sandboxes.create();
    await expect(plain.filesystem.writeText("x", "/usr/bin/other")).rejects.toThrow(/Read-only file system/);
  });

  it("processes run as the image's User, named through its /etc/passwd and /etc/group", async () => {
    const users = [
      ["app", "app\n", "1000\n", "1000\n"],
      ["1000", "app\n", "1000\n", "1000\n"],
      ["app:staff", "app\n", "1000\n", "50\n"],
      ["0", "root\n", "0\n", "0\n"],
    ];
    for (const [user, whoami, uid, gid] of users) {
      const reference = `example.test/user-${(user as string).replace(":", "-")}:1`;
      await fake.images.add(reference, { user, files: { "/etc/passwd": PASSWD, "/etc/group": GROUP } });
      const sb = await client.sandboxes.create({ image: reference });
      expect((await sb.run("whoami; id -u; id -g")).stdout, user).toBe(`${whoami}${uid}${gid}`);
    }
    await fake.images.add("example.test/nobody:1", { user: "4321" });
    const sb = await client.sandboxes.create({ image: "example.test/nobody:1" });
    expect(await sb.run("id")).toMatchObject({ stdout: "uid=4321 gid=4321\n", exitCode: 0 });
    expect(await sb.run("whoami")).toMatchObject({
      stderr: "whoami: cannot find name for user ID 4321\n",
      exitCode: 1,
    });
    expect((await sb.run("echo $HOME")).stdout).toBe("/\n");
    const root = await client.sandboxes.create();
    expect((await root.run("whoami; id")).stdout).toBe("root\nuid=0(root) gid=0(root)\n");
  });

  it("a private repository: who has no credentials learns nothing of its tags", async () => {
    const credentials = { username: "u", password: "p" };
    await fake.images.add("private.test/team/app:1", { credentials });
    for (const reference of ["private.test/team/app:1", "private.test/team/app:2"]) {
      const error = await client.images.fromRegistry(reference).catch((e: unknown) => e);
      expect(error, reference).toBeInstanceOf(AuthenticationError);
      expect((error as AuthenticationError).registry).toBe("private.test");
    }
    await expect(client.images.fromRegistry("private.test/team/app:2", { credentials })).rejects.toBeInstanceOf(
      NotFoundError,
    );
    expect((await client.images.fromRegistry("private.test/team/app:1", { credentials })).ref).toBe(
      "private.test/team/app:1",
    );
    // The fake records every call, but never a registry password (a pull is a stream: no request kept).
    const pulls = fake.calls.filter((c) => c.method === "PullImage");
    expect(pulls.length).toBeGreaterThan(0);
    expect(JSON.stringify(pulls)).not.toContain('"p"');
  });

  it("a digest pulls the image it names; a tag moved to another image moves its ref", async () => {
    const first = await fake.images.add("example.test/moving:latest", { env: { V: "1" } });
    const byDigest = await client.images.fromRegistry(`example.test/moving@${first.digest}`);
    expect(byDigest.id).toBe(first.id);
    const pulled = await client.images.fromRegistry("example.test/moving");
    expect(pulled.id).toBe(first.id);
    const second = await fake.images.add("example.test/moving:latest", { env: { V: "2" } });
    const again = await client.images.fromRegistry("example.test/moving");
    expect(again.id).toBe(second.id);
    expect((await client.images.get(first.id)).refs).not.toContain("example.test/moving:latest");
    expect(fake.images.stored.map((i) => i.id)).toEqual(expect.arrayContaining([first.id, second.id]));
  });
});
