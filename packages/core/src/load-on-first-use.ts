/**
 * Parts of the Promise API that a small app may never call (files, file handles, commands)
 * live in modules loaded with `import()` on first use, so a bundler that splits code there
 * leaves them out of what the page loads at start. Class methods cannot be tree-shaken; this
 * is how they stay out anyway.
 */
import { ConnectionError } from "./errors.js";

/** `load()`, with a failure (a chunk the network did not deliver) as a `ConnectionError`. */
export async function loadOnFirstUse<M>(load: () => Promise<M>): Promise<M> {
  try {
    return await load();
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ConnectionError(`could not load a part of the sbx client: ${reason}`, { cause: error });
  }
}
