/** The runtime driver interface lives with the engine in @sbx/server-kit. */
export * from "@sbx/server-kit";
