// @sbx/client/effect in deno: the deno adapter's Effect API, re-exported.
export * from "@sbx/deno/effect";
