export * from "./gen/sbx/v1/common_pb.js";
export * from "./gen/sbx/v1/filesystem_pb.js";
export * from "./gen/sbx/v1/process_pb.js";
export * from "./gen/sbx/v1/sandbox_pb.js";
export * from "./image-reference.js";
export * from "./limits.js";
export * from "./raw-routes.js";
