// A reference point for the bundle-size benchmark, not an SDK: the same app as sbx.ts with
// only the protocol stack @sbx/web is built on (the generated @sbx/proto services, Connect
// over fetch, protobuf-es) and none of the SDK (no Effect, no retries, no typed errors).
// What any client on this stack costs at least.
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { OutputStream, ProcessService, SandboxService } from "@sbx/proto";

const params = new URLSearchParams(location.search);
const transport = createConnectTransport({
  baseUrl: params.get("endpoint") ?? "http://127.0.0.1:7420",
  useBinaryFormat: true,
  interceptors: [
    (next) => (req) => {
      req.header.set("authorization", `Bearer ${params.get("token") ?? ""}`);
      return next(req);
    },
  ],
});
const sandboxes = createClient(SandboxService, transport);
const processes = createClient(ProcessService, transport);
const { sandbox } = await sandboxes.createSandbox({ requestId: crypto.randomUUID() });
const sandboxId = sandbox!.id;
const processId = crypto.randomUUID();
await processes.startProcess({ sandboxId, processId, spec: { argv: ["echo", "hello from the sandbox"] } });
const decoder = new TextDecoder();
let stdout = "";
for await (const chunk of processes.readOutput({ sandboxId, processId, stream: OutputStream.STDOUT })) {
  stdout += decoder.decode(chunk.data, { stream: true });
}
document.body.textContent = stdout;
await sandboxes.terminateSandbox({ sandboxId });
