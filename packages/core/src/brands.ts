/** Marks that `instanceof` checks by (see lazy-classes.ts); `Symbol.for`, so duplicated installs agree. */
export const COMMAND_HANDLE: unique symbol = Symbol.for("@sbx/core/CommandHandle") as never;
export const SANDBOX_FILE: unique symbol = Symbol.for("@sbx/core/SandboxFile") as never;
