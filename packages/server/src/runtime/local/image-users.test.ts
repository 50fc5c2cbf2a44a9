// Which sandboxes stand on an image's layers: each from the start of its start until its
// destroy has ended (either way); an image's delete waits for those on their way out.
import { describe, expect, it } from "vitest";
import { ImageUsers } from "./image-users.js";

describe("an image's users", () => {
  it("count from the start until the destroy has ended, and departures wait for those leaving", async () => {
    const users = new ImageUsers();
    expect(users.inUse("im-a")).toBe(false);
    const starting = users.begin("im-a");
    const warm = users.begin("im-a");
    users.begin("im-b");
    expect(users.inUse("im-a")).toBe(true);

    let destroyed!: () => void;
    starting.leave(new Promise<void>((resolve) => (destroyed = resolve)));
    warm.leave(Promise.reject(new Error("a destroy that failed still ends")));
    let departed = false;
    const departures = users.departures("im-a").then(() => (departed = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(departed).toBe(false); // one destroy still under way
    expect(users.inUse("im-a")).toBe(true);
    destroyed();
    await departures;
    expect(users.inUse("im-a")).toBe(false);
    expect(users.inUse("im-b")).toBe(true); // never left
    await users.departures("im-b"); // nothing on its way out: settles at once
  });

  it("a sandbox whose processes outlived its destroy stands on the layers until they are gone", async () => {
    const users = new ImageUsers();
    const use = users.begin("im-a");
    let gone!: () => void;
    use.leave(Promise.resolve(), new Promise<void>((resolve) => (gone = resolve)));
    await users.departures("im-a"); // its destroy has ended
    expect(users.inUse("im-a")).toBe(true);
    gone();
    await new Promise((resolve) => setImmediate(resolve));
    expect(users.inUse("im-a")).toBe(false);
  });
});
