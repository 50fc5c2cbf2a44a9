/** @sbx/cli — the `sbx` command. */
export { main } from "./cli.js";
