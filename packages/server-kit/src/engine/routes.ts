/** The engine's Connect services, mounted with their per-RPC body limits. */
import type { ConnectRouter } from "@connectrpc/connect";
import { FilesystemService, ImageService, NetworkService, ProcessService, SandboxService } from "@sbx/proto";
import { serveWithLimits } from "../request-limits.js";
import type { Engine } from "./engine.js";
import { filesystemService } from "./services/filesystem-service.js";
import { imageService } from "./services/image-service.js";
import { networkService } from "./services/network-service.js";
import { processService } from "./services/process-service.js";
import { sandboxService } from "./services/sandbox-service.js";

export function engineRoutes(engine: Engine): (router: ConnectRouter) => void {
  return (router) => {
    serveWithLimits(router, SandboxService, sandboxService(engine));
    serveWithLimits(router, ProcessService, processService(engine));
    serveWithLimits(router, FilesystemService, filesystemService(engine));
    serveWithLimits(router, ImageService, imageService(engine));
    serveWithLimits(router, NetworkService, networkService(engine));
  };
}
