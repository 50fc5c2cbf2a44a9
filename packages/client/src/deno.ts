// @sbx/client in deno: the deno adapter, re-exported.
export * from "@sbx/deno";
