/**
 * The raw HTTP routes (output by offset, file GET/PUT, image import) over the engine, for Node listeners:
 * the server mounts them, and so does the fake when it listens on a port.
 */
import type { Engine } from "../engine/engine.js";
import type { PlainRoute } from "../listen.js";
import type { Authorize, RawCallHook } from "./http-answers.js";
import { rawFilesRoute } from "./raw-files.js";
import { rawImagesRoute } from "./raw-images.js";
import { rawOutputRoute } from "./raw-output.js";

export type { Authorize, RawCallHook, RawCallPlan, RawMethod } from "./http-answers.js";
export { rawFilesRoute } from "./raw-files.js";
export { rawImagesRoute } from "./raw-images.js";
export { rawOutputRoute } from "./raw-output.js";

/**
 * Every raw route of `engine`, each request accepted when `authorize` says so; `hook` (the
 * fake's fault injection) may decline, fail or cut each call.
 */
export const rawRoutes = (engine: Engine, authorize: Authorize, hook?: RawCallHook): PlainRoute[] => [
  rawOutputRoute(engine, authorize, hook),
  rawFilesRoute(engine, authorize, hook),
  rawImagesRoute(engine, authorize, hook),
];
