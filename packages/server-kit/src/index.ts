/**
 * @sbx/server-kit — what the sbx server and the fake in @sbx/testing share. This entry is
 * browser-safe; the Node listener is at "@sbx/server-kit/listen".
 */
export { Changes } from "./changes.js";
export { checkArgv, checkEnv, checkId, checkName, checkTags, checkWorkdir, invalid } from "./validation.js";
