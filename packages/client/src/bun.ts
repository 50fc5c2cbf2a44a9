// @sbx/client in bun: the bun adapter, re-exported.
export * from "@sbx/bun";
