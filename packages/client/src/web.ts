// @sbx/client in web: the web adapter, re-exported.
export * from "@sbx/web";
