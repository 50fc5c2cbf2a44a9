// The bundle budget, checked on every CI run: the minimal browser app written with @sbx/web
// loads at most GOAL (40%) of the gzip bytes of the same app written with E2B's SDK. Sizes do
// not depend on the machine. `node bench/bundle-size.ts` prints where the bytes go.
import { describe, expect, it } from "vitest";
import { GOAL, measure } from "./bundle-size.ts";

describe("browser bundle budget", () => {
  it(`@sbx/web's minimal app loads at most ${GOAL * 100}% of E2B's (gzip)`, async () => {
    const { sbx, e2b, ratio } = await measure();
    const budget = Math.floor(GOAL * e2b.gzipBytes);
    expect(
      sbx.gzipBytes,
      `sbx ${sbx.gzipBytes} B gzip at start vs E2B ${e2b.gzipBytes} B: ratio ${ratio.toFixed(3)} > ${GOAL}` +
        " (run `node examples/web-app/bench/bundle-size.ts` to see where the bytes go)",
    ).toBeLessThanOrEqual(budget);
  }, 120_000);
});
