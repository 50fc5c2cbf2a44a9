// @sbx/client in node: the node adapter, re-exported.
export * from "@sbx/node";
