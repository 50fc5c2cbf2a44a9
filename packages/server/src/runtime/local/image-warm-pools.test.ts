// Warm pools per image: filled once an image is used (the runtime refills after each create), handed out per image and user, the least
// recently used image's pool closed when another needs room, and a sandbox whose layers are
// gone never handed out (stand-in sandboxes).
import type { ImageRecord } from "@sbx/server-kit";
import { describe, expect, it } from "vitest";
import { ImageWarmPools } from "./image-warm-pools.js";

interface Fake {
  readonly id: string;
  readonly image: string;
  readonly user: string | undefined;
  destroyed: boolean;
  readonly died: Promise<void>;
  destroy(): Promise<void>;
}

const image = (id: string) => ({ id }) as ImageRecord;
const settle = () => new Promise((resolve) => setTimeout(resolve, 10));

function pools(size = 1, images = 2) {
  const started: Fake[] = [];
  const broken = new Set<string>();
  const warm = new ImageWarmPools<Fake>({
    size,
    images,
    start: async (id, from, user) => {
      const fake: Fake = {
        id,
        image: from.id,
        user,
        destroyed: false,
        died: new Promise(() => {}),
        destroy: async () => {
          fake.destroyed = true;
        },
      };
      started.push(fake);
      return fake;
    },
    intact: (sandbox) => !broken.has(sandbox.image),
  });
  return { warm, started, broken };
}

describe("image warm pools", () => {
  it("start filling at an image's first use, and hand out its sandboxes per image and user", async () => {
    const { warm, started } = pools();
    const use = (id: string, user?: string) => {
      const taken = warm.take(image(id), user);
      warm.refill(image(id), user);
      return taken;
    };
    expect(use("im-a")).toBeUndefined();
    await settle();
    expect(started.map((s) => [s.image, s.user])).toEqual([["im-a", undefined]]);
    expect(use("im-a", "app")).toBeUndefined(); // another user: a pool of its own
    const handed = use("im-a");
    expect(handed).toBe(started[0]);
    await settle();
    expect(started).toHaveLength(3); // refilled: one more for im-a, and im-a as app
    expect(await warm.close()).toHaveLength(2);
  });

  it("close the pool of the image used longest ago when another needs room", async () => {
    const { warm, started } = pools(1, 2);
    const use = (id: string) => {
      warm.take(image(id), undefined);
      warm.refill(image(id), undefined);
    };
    use("im-a");
    use("im-b");
    await settle();
    use("im-a"); // a is now the most recently used
    use("im-c"); // b goes
    await settle();
    const b = started.find((s) => s.image === "im-b");
    expect(b?.destroyed).toBe(true);
    expect(warm.ready).toEqual(
      new Map([
        ["im-a as ", 1],
        ["im-c as ", 1],
      ]),
    );
    await warm.close();
  });

  it("never hands out a sandbox whose image's layers changed: it is destroyed", async () => {
    const { warm, started, broken } = pools();
    warm.take(image("im-a"), undefined);
    warm.refill(image("im-a"), undefined);
    await settle();
    broken.add("im-a");
    expect(warm.take(image("im-a"), undefined)).toBeUndefined();
    expect(started[0]?.destroyed).toBe(true);
    await warm.close();
  });

  it("hands out nothing when disabled or closed", async () => {
    const { warm, started } = pools(0);
    expect(warm.take(image("im-a"), undefined)).toBeUndefined();
    warm.refill(image("im-a"), undefined);
    await settle();
    expect(started).toEqual([]);
    const open = pools();
    await open.warm.close();
    expect(open.warm.take(image("im-a"), undefined)).toBeUndefined();
  });

  it("let go of an image: its pools close and their sandboxes are destroyed, other images' stay", async () => {
    const { warm, started } = pools(1, 4);
    for (const [id, user] of [
      ["im-a", undefined],
      ["im-a", "app"],
      ["im-b", undefined],
    ] as const) {
      warm.take(image(id), user);
      warm.refill(image(id), user);
    }
    await settle();
    await warm.release("im-a");
    expect(started.filter((s) => s.image === "im-a").map((s) => s.destroyed)).toEqual([true, true]);
    expect(started.find((s) => s.image === "im-b")?.destroyed).toBe(false);
    expect(warm.ready).toEqual(new Map([["im-b as ", 1]]));
    await warm.close();
  });
});
