// @sbx/client/effect in node: the node adapter's Effect API, re-exported.
export * from "@sbx/node/effect";
