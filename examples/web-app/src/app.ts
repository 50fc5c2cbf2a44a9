/**
 * The page: runs the Python in the textarea in an sbx sandbox and shows stdout and stderr as
 * they arrive, then the exit code. Talks to the sbx server straight from the browser with
 * @sbx/web (Connect over fetch; the server answers CORS preflights).
 *
 * The server and token come from the form, prefilled from the page's query string
 * (`?endpoint=http://127.0.0.1:7420&token=…`). One sandbox is created on the first run and
 * reused by later runs; it is terminated when the page goes away (and times out anyway).
 */
import { type ContainerProcess, type Sandbox, SandboxClient, SandboxError } from "@sbx/web";

const DEFAULT_ENDPOINT = "http://127.0.0.1:7420";
const SAMPLE_PROGRAM = `import sys, time

for i in range(1, 6):
    print(f"tick {i}")
    time.sleep(0.5)

print("something on stderr", file=sys.stderr)
print("done")
sys.exit(3)
`;
/** Where the program is written inside the sandbox (tracebacks name it). */
const PROGRAM_PATH = "/tmp/main.py";

const element = <T extends HTMLElement>(id: string): T => {
  const found = document.getElementById(id);
  if (!found) throw new Error(`the page has no #${id}`);
  return found as T;
};

const form = element<HTMLFormElement>("run-form");
const endpointInput = element<HTMLInputElement>("endpoint");
const tokenInput = element<HTMLInputElement>("token");
const codeInput = element<HTMLTextAreaElement>("code");
const runButton = element<HTMLButtonElement>("run");
const stopButton = element<HTMLButtonElement>("stop");
const sandboxLabel = element<HTMLSpanElement>("sandbox");
const statusLabel = element<HTMLSpanElement>("status");
const output = element<HTMLPreElement>("output");

const query = new URLSearchParams(location.search);
endpointInput.value = query.get("endpoint") ?? DEFAULT_ENDPOINT;
tokenInput.value = query.get("token") ?? "";
codeInput.value = query.get("code") ?? SAMPLE_PROGRAM;

/** The client and sandbox of the last run, reused while the endpoint and token stay the same. */
let session: { endpoint: string; token: string; client: SandboxClient; sandbox: Promise<Sandbox> } | undefined;
let running: ContainerProcess | undefined;

function setStatus(state: "idle" | "starting" | "running" | "exited" | "error", text: string, exitCode?: number) {
  statusLabel.dataset.state = state;
  if (exitCode === undefined) delete statusLabel.dataset.exitCode;
  else statusLabel.dataset.exitCode = String(exitCode);
  statusLabel.textContent = text;
}

/** Appends a piece of output; consecutive pieces of the same stream share one element. */
function append(stream: "stdout" | "stderr", text: string) {
  const last = output.lastElementChild;
  if (last instanceof HTMLSpanElement && last.dataset.stream === stream) {
    last.append(text);
  } else {
    const span = document.createElement("span");
    span.className = stream;
    span.dataset.stream = stream;
    span.textContent = text;
    output.append(span);
  }
  output.scrollTop = output.scrollHeight;
}

async function sandboxFor(endpoint: string, token: string): Promise<Sandbox> {
  if (session && (session.endpoint !== endpoint || session.token !== token)) {
    const old = session;
    session = undefined;
    void old.sandbox.then((sb) => sb.terminate()).catch(() => {});
    void old.client.close();
  }
  if (session) {
    const sandbox = await session.sandbox.catch(() => undefined);
    // A sandbox that failed to start or has ended (timed out, terminated) is replaced.
    if (sandbox && (await sandbox.poll()) === null) return sandbox;
    session = undefined;
  }
  const client = new SandboxClient({ endpoint, token });
  const sandbox = client.sandboxes.create({ app: "web-app", timeoutMs: 30 * 60_000 });
  session = { endpoint, token, client, sandbox };
  return sandbox;
}

async function run(code: string) {
  output.replaceChildren();
  runButton.disabled = true;
  setStatus("starting", "starting sandbox…");
  try {
    const sandbox = await sandboxFor(endpointInput.value.trim(), tokenInput.value.trim());
    sandboxLabel.textContent = `sandbox ${sandbox.id}`;
    sandboxLabel.dataset.sandboxId = sandbox.id;
    await sandbox.filesystem.writeText(code, PROGRAM_PATH);
    // -u: unbuffered, so each print reaches the page as it happens.
    const proc = await sandbox.exec(["python3", "-u", PROGRAM_PATH]);
    running = proc;
    stopButton.disabled = false;
    setStatus("running", "running…");
    const pump = async (stream: "stdout" | "stderr") => {
      for await (const chunk of proc[stream]) append(stream, chunk);
    };
    await Promise.all([pump("stdout"), pump("stderr")]);
    const exitCode = await proc.wait();
    setStatus("exited", `exit code ${exitCode}`, exitCode);
    const exit = document.createElement("span");
    exit.className = "exit";
    exit.textContent = `[exit code ${exitCode}]`;
    output.append(exit);
  } catch (error) {
    const message =
      error instanceof SandboxError
        ? `${error.code}: ${error.message}`
        : error instanceof Error
          ? error.message
          : String(error);
    setStatus("error", message);
  } finally {
    running = undefined;
    runButton.disabled = false;
    stopButton.disabled = true;
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  void run(codeInput.value);
});

stopButton.addEventListener("click", () => {
  stopButton.disabled = true;
  void running?.kill("SIGKILL").catch(() => {});
});

// Ctrl/Cmd+Enter runs.
codeInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !runButton.disabled) form.requestSubmit();
});

// Best effort: the sandbox's own timeout ends it if this request does not make it.
addEventListener("pagehide", () => {
  void session?.sandbox.then((sb) => sb.terminate()).catch(() => {});
});

setStatus("idle", "idle");
