package main

// Regression tests of the relay's security review: late first requests, '_' in framing names,
// caps no sandbox's visitors can fill, idle connections, big response heads, listen families.

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// secretRequest carries what must never reach an app: another port's token cookie and a forged
// X-Verified-User-Data.
const secretRequest = "GET /late HTTP/1.1\r\nHost: h\r\nCookie: a=1; sbx_sb-OTHER_8080=SECRET\r\nX-Verified-User-Data: {\"user\":\"admin\"}\r\n\r\n"

func appGotSecrets(app *rawApp) bool {
	for _, s := range app.seen() {
		if strings.Contains(s, "SECRET") || strings.Contains(s, "admin") {
			return true
		}
	}
	return false
}

// A request that comes after sniffWait (a browser's connection made ahead of its request) is
// read as one all the same.
func TestALateFirstRequestIsStillRead(t *testing.T) {
	app := startRawApp(t, okApp)
	_, addr := testRelay(t, app.addr(), 10)
	conn := dial(t, addr)
	time.Sleep(sniffWait + 200*time.Millisecond) // (silent past the sniff, then the request)
	io.WriteString(conn, secretRequest)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	status, _ := br.ReadString('\n')
	if status != "HTTP/1.1 200 OK\r\n" {
		t.Fatalf("answered %q", status)
	}
	if appGotSecrets(app) {
		t.Errorf("the app got the token cookie or the forged header: %q", app.seen())
	}
	// And the connection goes on as HTTP: a second request is read too.
	io.WriteString(conn, strings.Replace(secretRequest, "/late", "/second", 1))
	var answers []byte
	for !strings.Contains(string(answers), "/second") {
		b, err := br.ReadByte()
		if err != nil {
			t.Fatalf("no second answer: %v (%q)", err, answers)
		}
		answers = append(answers, b)
	}
	if appGotSecrets(app) {
		t.Errorf("the app got the token cookie or the forged header: %q", app.seen())
	}
}

// Once the app spoke first (a server-first protocol), an HTTP request from the client ends the
// connection: it reaches the app neither raw nor read.
func TestAnHTTPRequestAfterTheAppSpokeEndsTheConnection(t *testing.T) {
	app := startRawApp(t, func(conn net.Conn, br *bufio.Reader) {
		io.WriteString(conn, "220 hello\r\n")
		io.Copy(io.Discard, br)
	})
	_, addr := testRelay(t, app.addr(), 10)
	conn := dial(t, addr)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	if line, _ := br.ReadString('\n'); line != "220 hello\r\n" {
		t.Fatalf("banner %q", line)
	}
	io.WriteString(conn, secretRequest)
	if rest, err := io.ReadAll(br); err != nil && !errors.Is(err, syscall.ECONNRESET) || len(rest) > 0 {
		t.Errorf("then %q, %v (not the connection's end)", rest, err)
	}
	if appGotSecrets(app) {
		t.Errorf("the app got the token cookie or the forged header: %q", app.seen())
	}
}

// A client-first protocol that is not HTTP, starting late, is piped as it is.
func TestALateNonHTTPClientIsPiped(t *testing.T) {
	app := startRawApp(t, func(conn net.Conn, br *bufio.Reader) {
		io.Copy(conn, br)
		conn.(*net.TCPConn).CloseWrite()
	})
	_, addr := testRelay(t, app.addr(), 10)
	conn := dial(t, addr)
	time.Sleep(sniffWait + 200*time.Millisecond)
	io.WriteString(conn, "\x00\x01binary")
	conn.(*net.TCPConn).CloseWrite()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, _ := io.ReadAll(conn); string(got) != "\x00\x01binary" {
		t.Errorf("echo %q", got)
	}
}

// Field names spelt with '_' for a framing, routing or hop-by-hop field are refused: CGI-style
// servers read them as the field itself.
func TestUnderscoreFramingNamesAreRefused(t *testing.T) {
	app := startRawApp(t, okApp)
	_, addr := testRelay(t, app.addr(), 10)
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: h\r\nX-Verified-User-Data: {\"user\":\"admin\"}\r\n\r\n"
	body := "0\r\n\r\n" + smuggled
	for _, field := range []string{"Transfer_Encoding: chunked", "Content_Length: 5", "transfer_ENCODING: chunked", "Keep_Alive: 1"} {
		req := "POST / HTTP/1.1\r\nHost: h\r\n" + field + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
		if got := talk(t, addr, req); !strings.HasPrefix(got, "HTTP/1.1 400 ") {
			t.Errorf("%s: answered %q", field, got)
		}
	}
	for _, s := range app.seen() {
		if s != "" {
			t.Errorf("the app got %q", s)
		}
	}
	// Other names with '_' pass.
	if got := talk(t, addr, "GET /ok HTTP/1.1\r\nHost: h\r\nX_Custom: 1\r\n\r\n"); !strings.Contains(got, "/ok") {
		t.Errorf("X_Custom: answered %q", got)
	}
}

// Connections that fill the relay's places through two sandboxes' tunnels leave places for a
// third sandbox's (its fair share), and one client address cannot take them all.
func TestNoSandboxesVisitorsTakeEveryPlace(t *testing.T) {
	hold := startRawApp(t, func(conn net.Conn, br *bufio.Reader) { io.Copy(io.Discard, br) })
	other := startRawApp(t, okApp)
	r := &relay{maxConnections: 20, maxPerTunnel: 10, tunnels: map[string]*tunnel{}}
	var addrs []string
	for i, target := range []string{hold.addr(), hold.addr(), hold.addr(), other.addr()} {
		host, port, err := r.open(relayRequest{Sandbox: "sb-" + strconv.Itoa((i+1)/2), Port: 8000 + i, Listen: "127.0.0.1", Target: target})
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, net.JoinHostPort(host, strconv.Itoa(port)))
	}
	defer func() {
		for _, sb := range []string{"sb-0", "sb-1", "sb-2"} {
			for _, tun := range r.close(sb, 0) {
				tun.waitGone()
			}
		}
	}()
	// sb-0's tunnel and sb-1's two, each as full as they may be.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; i < 30; i++ {
		c, err := net.Dial("tcp", addrs[i%3])
		if err != nil {
			continue // (refused: reset before the dial saw it made)
		}
		io.WriteString(c, "\x00hold") // (piped, not silent)
		held = append(held, c)
	}
	// (Every one of them admitted or refused by now: the relay has read each one's bytes.)
	waitFor(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.perSandbox["sb-0"]+r.perSandbox["sb-1"] >= 10
	})
	got := talk(t, addrs[3], "GET /victim HTTP/1.1\r\nHost: h\r\n\r\n")
	if !strings.Contains(got, "/victim") {
		t.Errorf("sb-2's tunnel answered %q", got)
	}
	r.mu.Lock()
	held01 := r.perSandbox["sb-0"] + r.perSandbox["sb-1"]
	r.mu.Unlock()
	if held01 >= 20 {
		t.Errorf("sb-0 and sb-1 hold %d of 20 places", held01)
	}

	// One client address: capped over all tunnels.
	r2 := &relay{maxConnections: 100, maxPerTunnel: 100, maxPerClient: 2, tunnels: map[string]*tunnel{}}
	host, port, err := r2.open(relayRequest{Sandbox: "sb-c", Port: 1, Listen: "127.0.0.1", Target: other.addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, tun := range r2.close("sb-c", 0) {
			tun.waitGone()
		}
	}()
	at := net.JoinHostPort(host, strconv.Itoa(port))
	for i := 0; i < 2; i++ {
		c := dial(t, at)
		io.WriteString(c, "\x00hold")
	}
	waitFor(t, func() bool {
		r2.mu.Lock()
		defer r2.mu.Unlock()
		return r2.perClient["127.0.0.1"] == 2
	})
	if got := talkIfTaken(at, "GET /third HTTP/1.1\r\nHost: h\r\n\r\n"); got != "" {
		t.Errorf("a third connection from one address answered %q", got)
	}
}

// A connection over which nothing moves either way ends (silentIdle); a piped one after rawIdle.
func TestIdleConnectionsEnd(t *testing.T) {
	defer func(s, r time.Duration) { silentIdle, rawIdle = s, r }(silentIdle, rawIdle)
	silentIdle, rawIdle = 500*time.Millisecond, 700*time.Millisecond
	app := startRawApp(t, func(conn net.Conn, br *bufio.Reader) { io.Copy(io.Discard, br) })
	r, addr := testRelay(t, app.addr(), 10)
	for _, first := range []string{"", "\x00piped"} {
		conn := dial(t, addr)
		io.WriteString(conn, first)
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("%q: the idle connection stayed (%v)", first, err)
		}
		conn.Close()
	}
	waitFor(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.live == 0
	})
}

// A response head with a line longer than the read buffer (a big Content-Security-Policy) passes.
func TestBigResponseHeadsPass(t *testing.T) {
	policy := strings.Repeat("a", 48<<10)
	app := startRawApp(t, func(conn net.Conn, br *bufio.Reader) {
		br.ReadString('\n')
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Security-Policy: "+policy+"\r\nSet-Cookie: "+policy+"\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	})
	_, addr := testRelay(t, app.addr(), 10)
	got := talk(t, addr, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200 OK\r\n") || !strings.Contains(got, policy+"\r\n") || !strings.HasSuffix(got, "\r\n\r\nok") {
		t.Errorf("answered %d bytes: %.80q", len(got), got)
	}
	// Past maxResponseLine, the connection ends.
	app = startRawApp(t, func(conn net.Conn, br *bufio.Reader) {
		br.ReadString('\n')
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nX: "+strings.Repeat("a", maxResponseLine)+"\r\nContent-Length: 0\r\n\r\n")
	})
	_, addr = testRelay(t, app.addr(), 10)
	if got := talk(t, addr, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"); got != "" {
		t.Errorf("answered %d bytes past maxResponseLine", len(got))
	}
}

// A tunnel on an IPv4 address listens on IPv4 only.
func TestAnIPv4ListenerIsNotIPv6(t *testing.T) {
	probe, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Log("no IPv6 loopback here: nothing to tell")
		return
	}
	probe.Close()
	r := &relay{maxConnections: 10, maxPerTunnel: 10, tunnels: map[string]*tunnel{}}
	_, port, err := r.open(relayRequest{Sandbox: "sb-4", Port: 1, Listen: "0.0.0.0", Target: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, tun := range r.close("sb-4", 0) {
			tun.waitGone()
		}
	}()
	if c, err := net.Dial("tcp6", net.JoinHostPort("::1", strconv.Itoa(port))); err == nil {
		c.Close()
		t.Errorf("[::1]:%d took a connection", port)
	}
}

// talkIfTaken is talk for a connection that may be refused (reset, even as it is made): "".
func talkIfTaken(addr, text string) string {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return ""
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, text)
	got, _ := io.ReadAll(conn)
	return string(got)
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not within 10s")
		}
	}
}
