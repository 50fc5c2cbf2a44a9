package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testRelay is a relay with one tunnel to target, and the tunnel's address.
func testRelay(t *testing.T, target string, maxPerTunnel int) (*relay, string) {
	t.Helper()
	r := &relay{maxConnections: 100, maxPerTunnel: maxPerTunnel, tunnels: map[string]*tunnel{}}
	host, port, err := r.open(relayRequest{Sandbox: "sb-1", Port: 8000, Listen: "127.0.0.1", Target: target})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, tun := range r.close("sb-1", 0) {
			tun.waitGone()
		}
	})
	return r, net.JoinHostPort(host, strconv.Itoa(port))
}

// rawApp is a TCP server whose connections are handled by serve; it keeps every byte each
// connection sent it.
type rawApp struct {
	ln       net.Listener
	mu       sync.Mutex
	received []*bytes.Buffer
}

func startRawApp(t *testing.T, serve func(conn net.Conn, br *bufio.Reader)) *rawApp {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := &rawApp{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			seen := &bytes.Buffer{}
			app.mu.Lock()
			app.received = append(app.received, seen)
			app.mu.Unlock()
			go func() {
				defer conn.Close()
				serve(conn, bufio.NewReader(io.TeeReader(conn, &lockedWriter{&app.mu, seen})))
			}()
		}
	}()
	return app
}

func (a *rawApp) addr() string { return a.ln.Addr().String() }

func (a *rawApp) seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var all []string
	for _, b := range a.received {
		all = append(all, b.String())
	}
	return all
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// dial connects to addr; the connection is closed when the test ends.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// talk sends text, ends its side, and returns all that came back before the tunnel closed.
func talk(t *testing.T, addr, text string) string {
	t.Helper()
	conn := dial(t, addr)
	defer conn.Close() // (at once, not when the test ends)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, text); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(conn)
	return string(got)
}

// okApp answers every request with its path, keeping the connection alive.
func okApp(conn net.Conn, br *bufio.Reader) {
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		body := req.URL.RequestURI()
		fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
}

func TestRelayRewritesEachRequestOfAKeepAliveConnection(t *testing.T) {
	app := startRawApp(t, okApp)
	_, addr := testRelay(t, app.addr(), 10)
	got := talk(t, addr, "GET /one HTTP/1.1\r\nHost: h\r\nCookie: sbx_sb-2_80=stolen; a=b\r\n\r\n"+
		"POST /two?sbx_token=T HTTP/1.1\r\nHost: h\r\nX-Verified-User-Data: {\"user\":\"bob\"}\r\nContent-Length: 3\r\n\r\nabc"+
		"GET /three HTTP/1.1\r\nHost: h\r\n\r\n")
	want := "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n/one" + "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n/two" +
		"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n/three"
	if got != want {
		t.Errorf("client got %q, want %q", got, want)
	}
	seen := app.seen()
	wantSeen := "GET /one HTTP/1.1\r\nHost: h\r\nCookie: a=b\r\n\r\n" + "POST /two HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc" +
		"GET /three HTTP/1.1\r\nHost: h\r\n\r\n"
	if len(seen) != 1 || seen[0] != wantSeen {
		t.Errorf("the app got %q, want one connection with %q", seen, wantSeen)
	}
}

func TestRelayNeverLetsASmuggledRequestThrough(t *testing.T) {
	app := startRawApp(t, okApp)
	_, addr := testRelay(t, app.addr(), 10)
	for _, attack := range []string{
		// CL.TE and TE.CL: refused before anything reaches the app.
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nX-Verified-User-Data: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
	} {
		got := talk(t, addr, attack)
		if !strings.HasPrefix(got, "HTTP/1.1 400 Bad Request\r\n") {
			t.Errorf("%q: the client got %q, want a 400", attack, got)
		}
	}
	// What only a lenient server takes for a request is read as one too (not piped as it is).
	if got := talk(t, addr, "\r\nget /low HTTP/1.1\r\nX-Verified-User-Data: x\r\n\r\n"); got != "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n/low" {
		t.Errorf("client got %q", got)
	}
	if seen := app.seen(); len(seen) != 1 || seen[0] != "get /low HTTP/1.1\r\n\r\n" {
		t.Errorf("the app got %q", seen)
	}
	app.mu.Lock()
	app.received = nil
	app.mu.Unlock()
	// A chunked body whose chunks hide a request: the app gets it as body bytes, written anew.
	got := talk(t, addr, "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"20;ext=\"x\"\r\nGET /smuggled HTTP/1.1\r\nX: y\r\n\r\n\r\n0\r\nTrailer: t\r\n\r\n")
	if got != "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n/c" {
		t.Errorf("client got %q", got)
	}
	seen := app.seen()
	want := "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n20\r\nGET /smuggled HTTP/1.1\r\nX: y\r\n\r\n\r\n0\r\n\r\n"
	if len(seen) != 1 || seen[0] != want {
		t.Errorf("the app got %q, want %q", seen, want)
	}
}

func TestAnUpgradeTheAppDeclinesIsTheConnectionsLast(t *testing.T) {
	app := startRawApp(t, okApp)
	_, addr := testRelay(t, app.addr(), 10)
	got := talk(t, addr, "GET /first HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"+
		"GET /smuggled HTTP/1.1\r\nHost: h\r\nX-Verified-User-Data: {\"user\":\"bob\"}\r\n\r\n")
	if got != "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n/first" {
		t.Errorf("client got %q", got)
	}
	if seen := app.seen(); len(seen) != 1 || strings.Contains(seen[0], "smuggled") {
		t.Errorf("the app got %q", seen)
	}
}

func TestAnUpgradeTheAppAcceptsIsPipedBothWays(t *testing.T) {
	app := startRawApp(t, func(conn net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\nhello ")
		io.Copy(conn, br) // echo
	})
	_, addr := testRelay(t, app.addr(), 10)
	got := talk(t, addr, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\nGET / HTTP/1.1\r\nCookie: sbx_a_1=raw-now\r\n\r\n")
	want := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\nhello GET / HTTP/1.1\r\nCookie: sbx_a_1=raw-now\r\n\r\n"
	if got != want {
		t.Errorf("client got %q, want %q", got, want)
	}
}

func TestAnythingButHTTPIsPipedAsItIs(t *testing.T) {
	echo := func(conn net.Conn, br *bufio.Reader) {
		io.Copy(conn, br)
		conn.(*net.TCPConn).CloseWrite()
	}
	app := startRawApp(t, echo)
	_, addr := testRelay(t, app.addr(), 10)
	for _, text := range []string{"\x16\x03\x01 tls", "get key\r\n", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nframes", strings.Repeat("not HTTP ", 100000)} {
		if got := talk(t, addr, text); got != text {
			t.Errorf("echo of %d bytes gave %d", len(text), len(got))
		}
	}
	// A protocol where the server speaks first: the client's silence is not held against it.
	banner := startRawApp(t, func(conn net.Conn, br *bufio.Reader) {
		io.WriteString(conn, "220 hello\r\n")
		line, _ := br.ReadString('\n')
		io.WriteString(conn, "you said "+line)
	})
	_, addr = testRelay(t, banner.addr(), 10)
	conn := dial(t, addr)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	if line, _ := br.ReadString('\n'); line != "220 hello\r\n" {
		t.Errorf("banner %q", line)
	}
	io.WriteString(conn, "EHLO me\r\n")
	if line, _ := br.ReadString('\n'); line != "you said EHLO me\r\n" {
		t.Errorf("then %q", line)
	}
}

func TestBigBodiesAreSplicedIntact(t *testing.T) {
	const size = 16 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7 % 251)
	}
	sum := sha256.Sum256(data)
	app := startRawApp(t, func(conn net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			switch req.URL.Path {
			case "/upload":
				h := sha256.New()
				n, _ := io.Copy(h, req.Body)
				body := fmt.Sprintf("%d %x", n, h.Sum(nil))
				fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			case "/length":
				fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
				conn.Write(data)
			case "/chunked":
				io.WriteString(conn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
				for at := 0; at < size; at += 3 << 20 {
					end := at + 3<<20
					if end > size {
						end = size
					}
					fmt.Fprintf(conn, "%x\r\n", end-at)
					conn.Write(data[at:end])
					io.WriteString(conn, "\r\n")
				}
				io.WriteString(conn, "0\r\nX-Done: yes\r\n\r\n")
			case "/close":
				io.WriteString(conn, "HTTP/1.0 200 OK\r\n\r\n")
				conn.Write(data)
				return
			}
		}
	})
	_, addr := testRelay(t, app.addr(), 10)
	client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{}).DialContext, DisableCompression: true}}
	url := "http://" + addr
	for _, path := range []string{"/length", "/chunked", "/close", "/length"} {
		resp, err := client.Get(url + path)
		if err != nil {
			t.Fatal(path, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || sha256.Sum256(got) != sum {
			t.Errorf("%s: %d bytes, %v", path, len(got), err)
		}
		if path == "/chunked" && resp.Trailer.Get("X-Done") != "yes" {
			t.Errorf("trailers %v", resp.Trailer)
		}
	}
	for _, chunked := range []bool{false, true} {
		var body io.Reader = bytes.NewReader(data)
		if chunked {
			body = io.MultiReader(body) // (no length known: chunked)
		}
		resp, err := client.Post(url+"/upload", "application/octet-stream", body)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("%d %x", size, sum); string(got) != want {
			t.Errorf("upload (chunked %v): %q", chunked, got)
		}
	}
}

func TestRefusalsAndUnreachablePorts(t *testing.T) {
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	target := closed.Addr().String()
	closed.Close()
	_, addr := testRelay(t, target, 10)
	got := talk(t, addr, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 502 Bad Gateway\r\n") || !strings.HasSuffix(got, "port 8000 of sandbox sb-1 cannot be reached: nothing listens there\n") {
		t.Errorf("client got %q", got)
	}
	got = talk(t, addr, "GET / HTTP/1.1\r\n"+strings.Repeat("X: aaaaaaaa\r\n", 2000)+"\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 431 ") {
		t.Errorf("client got %q", got)
	}
}

func TestClosingATunnelEndsItsConnections(t *testing.T) {
	app := startRawApp(t, func(conn net.Conn, br *bufio.Reader) { io.Copy(conn, br) })
	r, addr := testRelay(t, app.addr(), 1)
	first := dial(t, addr)
	first.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(first, "raw bytes")
	if b := make([]byte, 9); func() bool { _, err := io.ReadFull(first, b); return err != nil }() {
		t.Fatal("no echo")
	}
	// Over the tunnel's cap (1): closed at once.
	if second, err := net.Dial("tcp", addr); err == nil { // (or reset as it connects)
		second.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := second.Read(make([]byte, 1)); err == nil {
			t.Error("a connection over the cap was served")
		}
		second.Close()
	}
	done := make(chan struct{})
	go func() {
		for _, tun := range r.close("sb-1", 0) {
			tun.waitGone()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("close did not end")
	}
	if _, err := first.Read(make([]byte, 1)); err == nil {
		t.Error("the connection outlived its tunnel")
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("the tunnel still listens")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live != 0 {
		t.Errorf("%d connections counted", r.live)
	}
}

func TestIdleKeepAliveConnectionsEnd(t *testing.T) {
	saved := keepAliveIdle
	keepAliveIdle = 200 * time.Millisecond
	defer func() { keepAliveIdle = saved }()
	app := startRawApp(t, okApp)
	_, addr := testRelay(t, app.addr(), 10)
	conn := dial(t, addr)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(conn, "GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
	got, _ := io.ReadAll(conn) // (ends once idle)
	if string(got) != "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n/x" {
		t.Errorf("client got %q", got)
	}
}
