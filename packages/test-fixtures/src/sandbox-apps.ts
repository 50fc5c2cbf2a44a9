/**
 * Test apps as real sandboxes run them: Python programs (the default image has python3) that
 * take their port as their first argument and print "ready" once they listen, and
 * `startSandboxApp` to start one and wait for that. Browser-safe (no Node imports): the
 * Chromium runtime tests start them too. The conformance suite's apps (its `TestAppName`s)
 * behave as the fake's handlers do (port-apps.ts): keep the two in step.
 */

/** A sandbox as far as starting an app needs it (any SDK's). */
export interface AppSandbox {
  readonly id: string;
  exec(
    argv: string[],
    options: { timeoutMs: number },
  ): Promise<{
    readonly stdout: { lines(): AsyncIterable<string> };
    readonly stderr: { readText(): Promise<string> };
  }>;
}

/** Starts `program` (Python source) with `args` in `sb` and resolves once it printed "ready". */
export async function startSandboxApp(sb: AppSandbox, program: string, args: readonly (string | number)[]) {
  const proc = await sb.exec(["python3", "-u", "-c", program, ...args.map(String)], { timeoutMs: 0 });
  for await (const line of proc.stdout.lines()) if (line === "ready") return;
  throw new Error(`the app did not start: ${await proc.stderr.readText()}`);
}

/**
 * The end of a program whose handler class is `App` (socketserver's, with `socketserver` and
 * `sys` imported): binds a threading TCP server on the port argument, says "ready", serves. Its
 * listen backlog takes a burst of connections (socketserver's default is 5: a test's 100 at
 * once, the moment it listens, would overflow it and be reset).
 */
export const SERVE_TCP_APP = `
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
socketserver.ThreadingTCPServer.request_queue_size = 256
server = socketserver.ThreadingTCPServer(("0.0.0.0", int(sys.argv[1])), App)
print("ready", flush=True)
server.serve_forever()
`;

/** A TCP echo: answers all a connection sent, then ends its side (a half-close kept). */
export const TCP_ECHO = `
import socketserver, sys
class App(socketserver.BaseRequestHandler):
    def handle(self):
        for data in iter(lambda: self.request.recv(65536), b""):
            self.request.sendall(data)
        self.request.shutdown(1)
${SERVE_TCP_APP}`;

/**
 * Reads a connection's first byte: "S" → it sends without end (never reading again); anything
 * else → it echoes that byte and all that follows, then ends.
 */
export const SOURCE_OR_ECHO = `
import socketserver, sys
class App(socketserver.BaseRequestHandler):
    def handle(self):
        first = self.request.recv(1)
        if first == b"S":
            block = b"s" * 65536
            while True:
                self.request.sendall(block)
        data = first
        while data:
            self.request.sendall(data)
            data = self.request.recv(65536)
        self.request.shutdown(1)
${SERVE_TCP_APP}`;

/** The conformance suite's "http-echo" (see TestAppName); its second argument is the sandbox's id. */
export const HTTP_ECHO = `
import http.server, json, sys
PORT, SANDBOX = int(sys.argv[1]), sys.argv[2]
class App(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def body(self):
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        data = b""
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            data += self.rfile.read(size)
            self.rfile.readline()
            if size == 0: return data
    def answer(self):
        if self.path == "/h2-settings":
            self.send_response(200); self.send_header("HTTP2-Settings", "AAA"); self.send_header("Content-Length", "2")
            self.end_headers(); self.wfile.write(b"ok"); return
        got = lambda name: self.headers.get(name)
        out = json.dumps({"sandboxId": SANDBOX, "port": PORT, "method": self.command, "path": self.path,
                          "host": got("Host"), "user": got("X-Verified-User-Data"), "cookie": got("Cookie"),
                          "authorization": got("Authorization"), "body": self.body().decode("latin-1")}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Set-Cookie", "app=1; Path=/"); self.send_header("Content-Length", str(len(out)))
        self.end_headers(); self.wfile.write(out)
    do_GET = do_POST = do_PUT = do_DELETE = answer
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer.request_queue_size = 256
server = http.server.ThreadingHTTPServer(("0.0.0.0", PORT), App)
print("ready", flush=True)
server.serve_forever()
`;

/**
 * The start of the programs that read a request's head first: `HeadHandler`, socketserver's
 * handler that reads the head and calls `on_head(head as text, the bytes after it)`, and helpers.
 */
const ON_HEAD = String.raw`
import base64, hashlib, json, re, socketserver, sys
class HeadHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data = b""
        while b"\r\n\r\n" not in data:
            more = self.request.recv(65536)
            if not more: return
            data += more
        head, rest = data.split(b"\r\n\r\n", 1)
        self.on_head(head.decode("latin-1"), rest)
def header_lists(head):
    headers = {}
    for line in head.split("\r\n")[1:]:
        k, v = line.split(":", 1); headers.setdefault(k.strip().lower(), []).append(v.strip())
    return headers
def switch_to_websocket(s, key):
    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
`;

/**
 * The conformance suite's "websocket-echo" (the handshake and frames by hand: Python's standard
 * library has no WebSocket server; a client's frames up to 125 bytes).
 */
export const WEBSOCKET_ECHO = `${ON_HEAD}
def frame(payload):
    n = len(payload)
    return bytes([0x81, n]) + payload if n < 126 else bytes([0x81, 126]) + n.to_bytes(2, "big") + payload
class App(HeadHandler):
    def on_head(self, head, data):
        s = self.request
        headers = {k: v[0] for k, v in header_lists(head).items()}
        switch_to_websocket(s, headers["sec-websocket-key"])
        s.sendall(frame(json.dumps({"host": headers.get("host"), "user": headers.get("x-verified-user-data")}).encode()))
        while True:
            while len(data) < 6 or len(data) < 6 + (data[1] & 0x7f):
                more = s.recv(4096)
                if not more: return
                data += more
            opcode, n = data[0] & 0x0f, data[1] & 0x7f
            mask, payload, data = data[2:6], data[6:6 + n], data[6 + n:]
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 8:
                s.sendall(bytes([0x88, 0])); return
            s.sendall(frame(payload))
${SERVE_TCP_APP}`;

/** The conformance suite's "request-reader". */
export const REQUEST_READER = String.raw`${ON_HEAD}
class App(HeadHandler):
    def on_head(self, head, data):
        s = self.request; headers = header_lists(head); body = b""
        def more(data):
            chunk = s.recv(65536)
            if not chunk: raise EOFError
            return data + chunk
        try:
            if ",".join(headers.get("transfer-encoding", [])).lower() == "chunked":
                while True:
                    while b"\r\n" not in data: data = more(data)
                    size_line, data = data.split(b"\r\n", 1)
                    size = int(size_line, 16)
                    while len(data) < size + 2: data = more(data)
                    body += data[:size]; data = data[size + 2:]
                    if size == 0: break
            else:
                n = int(headers.get("content-length", ["0"])[0])
                while len(data) < n: data = more(data)
                body = data[:n]
        except EOFError:
            return
        out = json.dumps({"requestLine": head.split("\r\n")[0], "headers": headers, "body": body.decode("latin-1")}).encode()
        s.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " + str(len(out)).encode() + b"\r\n\r\n" + out)
${SERVE_TCP_APP}`;

/** The conformance suite's "held-requests". */
export const HELD_REQUESTS = String.raw`${ON_HEAD}
class App(HeadHandler):
    def on_head(self, head, _):
        s = self.request
        key = re.search(r"(?im)^sec-websocket-key:\s*(.*?)\s*$", head)
        if key and re.search(r"(?im)^upgrade:\s*websocket\s*$", head):
            switch_to_websocket(s, key.group(1))
        elif not head.split(" ")[1].startswith("/quiet"):
            s.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\n.\r\n")
        while s.recv(65536): pass
${SERVE_TCP_APP}`;

/** The program of each of the conformance suite's apps, by name (`TestAppName`). */
export const SANDBOX_APPS = {
  "http-echo": HTTP_ECHO,
  "websocket-echo": WEBSOCKET_ECHO,
  "request-reader": REQUEST_READER,
  "held-requests": HELD_REQUESTS,
} as const;

/** Starts the conformance suite's `app` on `port` in `sb`. */
export const serveSandboxApp = (sb: AppSandbox, port: number, app: keyof typeof SANDBOX_APPS): Promise<void> =>
  startSandboxApp(sb, SANDBOX_APPS[app], [port, sb.id]);
