// Wire-level cases: requests the SDK never sends (its own checks stop them first) or options
// it does not expose, spoken as Connect's JSON protocol over `fetch`, so they run in any
// runtime against a target that serves HTTP.
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from "@sbx/proto";
import { equal, ok } from "../assert.js";
import type { ConformanceTarget, Harness, TestApi } from "../target.js";

const T = 60_000;
type Endpoint = NonNullable<ConformanceTarget["endpoint"]>;

/** One unary Connect call with a JSON body: the HTTP status and the JSON answer. */
export async function connectJson(
  endpoint: Endpoint,
  service: string,
  method: string,
  body: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const { url, token } = endpoint();
  const response = await fetch(`${url.replace(/\/+$/, "")}/sbx.v1.${service}/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

export function protocolCases(t: TestApi, h: Harness, endpoint: Endpoint): void {
  const list = (request: Record<string, unknown>) => connectJson(endpoint, "SandboxService", "ListSandboxes", request);

  t.describe("protocol", () => {
    t.it(
      "ListSandboxes rejects invalid tags in its filter",
      async () => {
        for (const tags of [{ "": "x" }, { k: "v".repeat(256) }, { ["k".repeat(64)]: "v" }]) {
          const { status, json } = await list({ app: h.app, tags });
          equal(status, 400, `status for tags ${JSON.stringify(tags).slice(0, 40)}`);
          equal(json.code, "invalid_argument");
        }
        const fine = await list({ app: h.app, tags: { k: "v" } });
        equal(fine.status, 200);
      },
      T,
    );

    t.it(
      "ListSandboxes pages: DEFAULT_PAGE_SIZE when no size is asked, a larger size when asked (up to MAX_PAGE_SIZE)",
      async () => {
        const app = `${h.app}-pages`;
        const client = h.client();
        const count = DEFAULT_PAGE_SIZE + 1;
        // Short-lived sandboxes, in a few batches, listed with includeFinished.
        for (let made = 0; made < count; made += 20) {
          const batch = Array.from({ length: Math.min(20, count - made) }, () =>
            client.sandboxes.create(h.createOptions({ app, command: ["true"] })),
          );
          await Promise.all((await Promise.all(batch)).map((sb) => sb.wait({ raiseOnTermination: false })));
        }
        const first = await list({ app, includeFinished: true });
        equal(first.status, 200);
        equal((first.json.sandboxes as unknown[]).length, DEFAULT_PAGE_SIZE, "default page size");
        ok(typeof first.json.nextCursor === "string" && first.json.nextCursor !== "", "a cursor to the next page");
        const rest = await list({ app, includeFinished: true, cursor: first.json.nextCursor });
        equal((rest.json.sandboxes as unknown[]).length, count - DEFAULT_PAGE_SIZE, "the next page");
        equal(rest.json.nextCursor ?? "", "", "no cursor after the last page");
        const big = await list({ app, includeFinished: true, pageSize: MAX_PAGE_SIZE + 1 });
        equal(big.status, 200, "a page size above MAX_PAGE_SIZE is capped, not refused");
        equal((big.json.sandboxes as unknown[]).length, count, "one page holds all when asked for more than exist");
        equal(big.json.nextCursor ?? "", "");
      },
      120_000,
    );
  });
}
