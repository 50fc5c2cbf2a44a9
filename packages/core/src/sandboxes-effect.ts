/** Sandbox operations for the Effect API (`Sandboxes.create`, …). */
export {
  type CreateSandboxOptions,
  createSandbox as create,
  getSandbox as get,
  type ListSandboxesOptions,
  listSandboxes as list,
  lookupSandbox as lookup,
  type SandboxInfo,
  setSandboxTags as setTags,
  terminateSandbox as terminate,
  type UpdateSandboxOptions,
  updateSandbox as update,
  waitSandbox as wait,
  waitUntilReady,
} from "./sandbox-ops.js";
