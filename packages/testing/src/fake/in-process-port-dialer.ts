/**
 * `sb.connect` / `sb.tunnel` against the in-process fake (`fake.transport`, no listener): the
 * transport carries this dialer (`withPortDialer`), which runs the engine's own checks
 * (`portConnectProblem`, as the tunnel route does) and hands an `onPortConnection` handler
 * the other ends of two web streams, backpressure included. An `onPort` (HTTP) handler needs
 * an HTTP server in between: that is `fake.listen()`'s, so in-process it is UnsupportedError.
 * Browser-safe.
 */
import { type PortConnection, type PortDialer, portConnectError } from "@sbx/core/connect";
import { type Engine, portConnectProblem } from "@sbx/server-kit";
import type { PortRegistry } from "./ports.js";

export function inProcessPortDialer(engine: Engine, ports: PortRegistry): PortDialer {
  return async (sandboxId, port) => {
    const problem = portConnectProblem(engine, sandboxId, port);
    if (problem) throw portConnectError(problem.refusal, problem.message, port);
    const entry = ports.find(port);
    if (!entry) throw portConnectError("refused", `nothing listens on port ${port} in sandbox ${sandboxId}`, port);
    if (entry.kind === "http") {
      throw portConnectError(
        "unsupported",
        `port ${port} has an onPort (HTTP) handler, which the in-process fake cannot connect to: ` +
          "use onPortConnection, or fake.listen() and a client of its URL",
        port,
      );
    }
    const [toApp, failToApp] = pipe();
    const [toClient, failToClient] = pipe();
    const app: PortConnection = { readable: toApp.readable, writable: toClient.writable };
    Promise.resolve()
      .then(() => entry.handler(app, { sandboxId, port }))
      .catch((error: unknown) => {
        const failure = portConnectError("refused", `the handler of port ${port} failed: ${String(error)}`, port);
        failToClient(failure);
        failToApp(failure);
      });
    // The client's ends, as sb.connect's are: cancelling the readable or aborting the writable
    // closes the whole connection (the app's streams error).
    const closeAll = (reason: string) => {
      const closed = portConnectError("refused", `port ${port}: ${reason}`, port);
      failToApp(closed);
      failToClient(closed);
    };
    const reader = toClient.readable.getReader();
    const writer = toApp.writable.getWriter();
    const readable = new ReadableStream<Uint8Array>(
      {
        async pull(controller) {
          const next = await reader.read();
          if (next.done) controller.close();
          else controller.enqueue(next.value);
        },
        cancel: () => closeAll("the client closed the connection"),
      },
      { highWaterMark: 0 },
    );
    const writable = new WritableStream<Uint8Array>({
      write: (chunk) => writer.write(chunk),
      close: () => writer.close(),
      abort: () => closeAll("the client closed the connection"),
    });
    return { readable, writable };
  };
}

/** A byte pipe (an identity TransformStream) and a way to fail both its ends, locked or not. */
function pipe(): [TransformStream<Uint8Array, Uint8Array>, (error: unknown) => void] {
  let controller: TransformStreamDefaultController<Uint8Array> | undefined;
  const stream = new TransformStream<Uint8Array, Uint8Array>({
    start(c) {
      controller = c;
    },
  });
  return [stream, (error) => controller?.error(error)];
}
