// @sbx/client/effect in bun: the bun adapter's Effect API, re-exported.
export * from "@sbx/bun/effect";
