/**
 * What the image store's suites share: the stores a test opens, closed when it ends, and the
 * ImageStoreError a call fails with.
 */
import { mkdtempSync } from "node:fs";
import { join } from "node:path";
import { OciImageStore, type OciImageStoreOptions } from "../oci-image-store.js";
import { ImageStoreError } from "../store-errors.js";

/** The ImageStoreError `promise` fails with; another error is thrown on, and success fails the test. */
export async function storeFailure(promise: Promise<unknown>): Promise<ImageStoreError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ImageStoreError) return error;
    throw error;
  }
  throw new Error("expected the call to fail");
}

/** The stores of a suite's tests, opened in fresh dirs under `workDir()` unless told otherwise. */
export function testStores(workDir: () => string) {
  const open: OciImageStore[] = [];
  /** Closes `store` (opened some other way) when the test ends too. */
  const keep = (store: OciImageStore) => {
    open.push(store);
    return store;
  };
  return {
    keep,
    openStore: async (options: Partial<OciImageStoreOptions> = {}) =>
      keep(await OciImageStore.open({ dir: mkdtempSync(join(workDir(), "store-")), ...options })),
    /** Closes `store` now, and not again when the test ends. */
    closeStore: (store: OciImageStore) => {
      open.splice(open.indexOf(store), 1);
      store.close();
    },
    /** Closes every store still open (the suite's afterEach). */
    closeStores: () => {
      for (const store of open.splice(0)) store.close();
    },
  };
}
