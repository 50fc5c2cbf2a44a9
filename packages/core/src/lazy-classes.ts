/**
 * `CommandHandle` and `SandboxFile` as the public API names them, without their code: their
 * modules load on first use (see load-on-first-use.ts), and a value export of the classes
 * would put them back in every bundle. Each name is the class's type, and a value for which
 * `x instanceof CommandHandle` works as with the class (across duplicated installs too).
 */

import { COMMAND_HANDLE, SANDBOX_FILE } from "./brands.js";
import type { CommandHandle as CommandHandleClass } from "./command-handle.js";
import type { SandboxFile as SandboxFileClass } from "./file-handle.js";

const branded = (brand: symbol) => (value: unknown) =>
  typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[brand] === true;

export type CommandHandle = CommandHandleClass;
export const CommandHandle: { [Symbol.hasInstance](value: unknown): value is CommandHandleClass } = {
  [Symbol.hasInstance]: branded(COMMAND_HANDLE),
} as { [Symbol.hasInstance](value: unknown): value is CommandHandleClass };

export type SandboxFile<T extends string | Uint8Array = string | Uint8Array> = SandboxFileClass<T>;
export const SandboxFile: { [Symbol.hasInstance](value: unknown): value is SandboxFileClass } = {
  [Symbol.hasInstance]: branded(SANDBOX_FILE),
} as { [Symbol.hasInstance](value: unknown): value is SandboxFileClass };
