/**
 * @sbx/testing — a fake sbx server for your tests (in memory, scriptable, with fault
 * injection) and, at "@sbx/testing/conformance", the suite every sbx target passes.
 */

export type { Listener as FakeListener, ListenOptions } from "@sbx/server-kit/listen";
export type {
  FakeImageFile,
  FakeImageFiles,
  FakeImageOptions,
  FakeImages,
  FakeRegisteredImage,
} from "./fake/fake-images.js";
export { createFakeServer, type FakeServer, type FakeServerOptions } from "./fake/fake-server.js";
export type {
  CutStreamsOptions,
  FailNextCodeOptions,
  FailNextImageOptions,
  FailNextOptions,
  FaultCode,
  FaultMethod,
  RecordedCall,
  RpcMethodName,
} from "./fake/faults.js";
export type { ExecContext, ExecHandler, ExecPattern, ExecResult } from "./fake/handlers.js";
export type { PortConnection, PortConnectionHandler, PortContext, PortHandler } from "./fake/ports.js";
