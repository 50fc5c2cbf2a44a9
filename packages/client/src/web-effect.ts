// @sbx/client/effect in web: the web adapter's Effect API, re-exported.
export * from "@sbx/web/effect";
