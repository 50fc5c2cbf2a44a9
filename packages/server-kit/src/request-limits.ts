/**
 * How large a request each RPC reads, in one place (the sbx server and the fake). A request over its limit is refused with
 * `resource_exhausted` (Connect's answer for a message over `readMaxBytes`, as gRPC's) before
 * it is read when its size is announced, else as soon as it passes the limit.
 */
import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import { FilesystemService, MAX_UPLOAD_CHUNK_BYTES } from "@sbx/proto";

/**
 * Every RPC but WriteFile: ample for the largest of them (a command's arguments and
 * environment, Linux's ~2 MiB, or a 1 MiB stdin write, base64 in JSON).
 */
export const READ_MAX_BYTES = 4 * 1024 * 1024;

/** WriteFile carries an upload chunk: its data (base64 in JSON: 4/3), plus path and framing. */
export const WRITE_FILE_READ_MAX_BYTES = Math.ceil((MAX_UPLOAD_CHUNK_BYTES * 4) / 3) + 64 * 1024;

type DescMethod = Parameters<ConnectRouter["rpc"]>[0];
type DescService = Parameters<ConnectRouter["service"]>[0];

export function readMaxBytesOf(method: DescMethod): number {
  return method === FilesystemService.method.writeFile ? WRITE_FILE_READ_MAX_BYTES : READ_MAX_BYTES;
}

/** Registers `service` on `router`, each method with its read limit. */
export function serveWithLimits<S extends DescService>(router: ConnectRouter, service: S, impl: ServiceImpl<S>): void {
  for (const method of service.methods) {
    const implementation = (impl as Record<string, (...args: never[]) => unknown>)[method.localName];
    if (!implementation) throw new Error(`${service.typeName}.${method.name} has no implementation`);
    router.rpc(method, implementation.bind(impl) as never, { readMaxBytes: readMaxBytesOf(method) });
  }
}
