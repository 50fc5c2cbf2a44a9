// A target's `sandboxImage`: every sandbox of the run starts from it, whichever way a case
// creates one, but for the cases that name an image of their own or ask for the default one.
// Shown against the fake, for the cases that create sandboxes each way.
import * as core from "@sbx/core";
import { afterAll, expect, it } from "vitest";
import { createFakeServer } from "../fake/fake-server.js";
import { defineConformanceSuite } from "./index.js";
import { runConformance } from "./runner.js";

const fake = createFakeServer();
const client = new core.SandboxClient({ transport: fake.transport });
afterAll(async () => {
  await client.close();
  await fake.close();
});

it("starts every sandbox of a run from the target's sandboxImage, unless a case names its own image", async () => {
  const image = await fake.images.add("registry.sbx.test/conformance/run-image:1", {
    env: { FROM_RUN_IMAGE: "yes" },
  });
  const results = await runConformance(
    (t) =>
      defineConformanceSuite(t, {
        name: "fake, sandboxes from an image",
        sdk: core,
        makeClient: () => new core.SandboxClient({ transport: fake.transport }),
        fake,
        sandboxImage: () => image.reference,
      }),
    {
      filter:
        /> (sandboxes > (creates a sandbox|names are unique|await using|a closed client)|exec > processes get the default image's environment|filesystem > \/usr is read-only|images > the default image is listed)/,
    },
  );
  expect(results).toHaveLength(7);
  for (const result of results) expect(result.ok, `${result.name}: ${result.error}`).toBe(true);

  const byImage = new Map<string, number>();
  for await (const sb of client.sandboxes.list({ includeFinished: true })) {
    byImage.set(sb.imageId ?? "", (byImage.get(sb.imageId ?? "") ?? 0) + 1);
  }
  // The default image only where a case asked for it: three cases, five sandboxes.
  expect(Object.fromEntries(byImage)).toEqual({ [image.id]: 6, "im-default": 5 });
});
