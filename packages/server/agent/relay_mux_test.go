package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// muxClient is a test's client end of a tunnel connection served by a relay's session.
type muxClient struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
	r    *relay
	done chan struct{}
}

type muxTestFrame struct {
	typ     int
	id      uint32
	payload []byte
}

// startMux serves one tunnel connection whose streams dial 127.0.0.1 (the sandbox's address),
// as a handed-over connection is served; it answers the client's end once READY has come.
func startMux(t *testing.T, r *relay) *muxClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server := (<-accepted).(*net.TCPConn)
	if r == nil {
		r = &relay{maxConnections: 1000, tunnels: map[string]*tunnel{}}
		r.counts()
	}
	s := newMuxSession(r, server, "sb-1", "127.0.0.1")
	r.mu.Lock()
	done := make(chan struct{})
	r.sessions[s] = done
	r.muxLive++
	r.mu.Unlock()
	s.started.Store(true)
	go s.run()
	c := &muxClient{t: t, conn: client, br: bufio.NewReader(client), r: r, done: done}
	t.Cleanup(func() { client.Close() })
	if f := c.next(); f.typ != muxReady {
		t.Fatalf("first frame %+v, not READY", f)
	}
	return c
}

func (c *muxClient) send(typ int, id uint32, payload []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(muxFrame(typ, id, payload)); err != nil {
		c.t.Fatal(err)
	}
}

func (c *muxClient) open(id uint32, port int) {
	var p [2]byte
	binary.BigEndian.PutUint16(p[:], uint16(port))
	c.send(muxOpen, id, p[:])
}

func (c *muxClient) window(id uint32, n uint32) {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], n)
	c.send(muxWin, id, p[:])
}

// next reads the next frame (failing the test after a while).
func (c *muxClient) next() muxTestFrame {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var head [muxHeadBytes]byte
	if _, err := io.ReadFull(c.br, head[:]); err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	payload := make([]byte, binary.BigEndian.Uint32(head[5:9]))
	if _, err := io.ReadFull(c.br, payload); err != nil {
		c.t.Fatalf("reading a frame's payload: %v", err)
	}
	return muxTestFrame{typ: int(head[0]), id: binary.BigEndian.Uint32(head[1:5]), payload: payload}
}

// nextOf skips WINDOW frames.
func (c *muxClient) nextOf() muxTestFrame {
	c.t.Helper()
	for {
		if f := c.next(); f.typ != muxWin {
			return f
		}
	}
}

func echoServer(t *testing.T) int {
	t.Helper()
	app := startRawApp(t, func(conn net.Conn, br *bufio.Reader) {
		io.Copy(conn, br)
		conn.(*net.TCPConn).CloseWrite()
	})
	return app.ln.Addr().(*net.TCPAddr).Port
}

// openHeld: a tunnel connection whose stream 1 is open to a held app's connection.
func openHeld(t *testing.T) (*muxClient, net.Conn) {
	t.Helper()
	appPort, held := heldApp(t)
	c := startMux(t, nil)
	c.open(1, appPort)
	if f := c.next(); f.typ != muxOpened {
		t.Fatalf("OPENED expected, got %+v", f)
	}
	return c, <-held
}

// silentApp is a port whose connections are taken and never read nor written to.
func silentApp(t *testing.T) int {
	t.Helper()
	done := make(chan struct{})
	app := startRawApp(t, func(net.Conn, *bufio.Reader) { <-done })
	t.Cleanup(func() { close(done) })
	return app.ln.Addr().(*net.TCPAddr).Port
}

// heldApp is a port whose first connection the test holds (and never reads).
func heldApp(t *testing.T) (int, <-chan net.Conn) {
	t.Helper()
	held := make(chan net.Conn, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err == nil {
			t.Cleanup(func() { conn.Close() })
			held <- conn
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, held
}

func TestMuxStreamsEchoByteForByteAndEndBothWays(t *testing.T) {
	port := echoServer(t)
	c := startMux(t, nil)
	c.open(1, port)
	opened := c.next()
	if opened.typ != muxOpened || opened.id != 1 || binary.BigEndian.Uint32(opened.payload) != muxWindow {
		t.Fatalf("OPENED expected, got %+v", opened)
	}
	// One big frame and many one-byte ones (gathered): all of it comes back, in order.
	var want bytes.Buffer
	big := bytes.Repeat([]byte("0123456789abcdef"), muxMaxData/16)
	c.send(muxData, 1, big)
	want.Write(big)
	for i := 0; i < 3000; i++ {
		b := []byte{byte('a' + i%26)}
		c.send(muxData, 1, b)
		want.Write(b)
	}
	c.send(muxEnd, 1, nil)
	var got bytes.Buffer
	for {
		f := c.nextOf()
		if f.typ == muxData && f.id == 1 {
			got.Write(f.payload)
			if got.Len() >= muxWindow {
				c.window(1, uint32(got.Len()))
			}
			continue
		}
		if f.typ != muxEnd || f.id != 1 {
			t.Fatalf("unexpected frame %+v", f)
		}
		break
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("echoed %d bytes, not the %d sent", got.Len(), want.Len())
	}
}

func TestMuxRefusalsNameThePort(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	c := startMux(t, nil)
	c.open(1, closedPort)
	f := c.next()
	if f.typ != muxReset || f.payload[0] != codeRefused ||
		string(f.payload[1:]) != "port "+strconv.Itoa(closedPort)+" of sandbox sb-1 cannot be reached: nothing listens there" {
		t.Fatalf("RESET refused expected, got %d %q", f.typ, f.payload)
	}
	c.open(2, 0)
	if f := c.next(); f.typ != muxReset || f.id != 2 || f.payload[0] != codeInvalid {
		t.Fatalf("RESET invalid expected, got %+v", f)
	}
}

func TestMuxAStreamPastItsWindowIsResetAndOthersGoOn(t *testing.T) {
	// A port that never reads: the relay's grants stop once its connection's buffers are full.
	port := echoServer(t)
	c := startMux(t, nil)
	c.open(1, silentApp(t))
	if f := c.next(); f.typ != muxOpened {
		t.Fatalf("OPENED expected, got %+v", f)
	}
	frames := make(chan muxTestFrame, 1024)
	go func() {
		for {
			c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			var head [muxHeadBytes]byte
			if _, err := io.ReadFull(c.br, head[:]); err != nil {
				close(frames)
				return
			}
			payload := make([]byte, binary.BigEndian.Uint32(head[5:9]))
			io.ReadFull(c.br, payload)
			frames <- muxTestFrame{typ: int(head[0]), id: binary.BigEndian.Uint32(head[1:5]), payload: payload}
		}
	}()
	chunk := make([]byte, muxMaxData)
	go func() {
		for sent := 0; sent < 64<<20; sent += len(chunk) {
			if _, err := c.conn.Write(muxFrame(muxData, 1, chunk)); err != nil {
				return
			}
		}
	}()
	for f := range frames {
		if f.typ == muxReset && f.id == 1 {
			if f.payload[0] != codeProtocol || !strings.Contains(string(f.payload[1:]), "sent past its window") {
				t.Fatalf("unexpected RESET %q", f.payload)
			}
			break
		}
	}
	// (The rest of what was sent on stream 1 is dropped; another stream opens and works.)
	c.open(2, port)
	for f := range frames {
		if f.typ == muxOpened && f.id == 2 {
			return
		}
	}
	t.Fatal("stream 2 did not open")
}

func TestMuxFramesThatBreakTheRulesEndTheConnection(t *testing.T) {
	for name, frame := range map[string][]byte{
		"unknown type":        muxFrame(42, 0, nil),
		"DATA on stream 0":    muxFrame(muxData, 0, []byte{1}),
		"oversized DATA":      append(muxFrame(muxData, 1, nil)[:5], 0, 0x10, 0, 1),
		"never-opened stream": muxFrame(muxData, 9, []byte{1}),
		"OPENED from client":  muxFrame(muxOpened, 1, []byte{0, 0, 0, 1}),
		"WINDOW of zero":      muxFrame(muxWin, 1, []byte{0, 0, 0, 0}),
		"bad UTF-8 reason":    muxFrame(muxReset, 1, []byte{codeClosed, 0xff}),
	} {
		t.Run(name, func(t *testing.T) {
			c := startMux(t, nil)
			if _, err := c.conn.Write(frame); err != nil {
				t.Fatal(err)
			}
			f := c.next()
			if f.typ != muxGoaway || f.payload[0] != codeProtocol {
				t.Fatalf("GOAWAY protocol expected, got %d %q", f.typ, f.payload)
			}
			select {
			case <-c.done:
			case <-time.After(5 * time.Second):
				t.Fatal("the session did not end")
			}
		})
	}
}

func TestMuxClosingTheSandboxEndsItsConnectionsAndStreams(t *testing.T) {
	c, app := openHeld(t)
	for _, done := range c.r.closeMux("sb-1") {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the session did not end")
		}
	}
	if f := c.next(); f.typ != muxGoaway || f.payload[0] != codeNotRunning || string(f.payload[1:]) != "sandbox sb-1 has finished" {
		t.Fatalf("GOAWAY notRunning expected, got %d %q", f.typ, f.payload)
	}
	// The app's connection is gone (before the close was answered).
	app.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := app.Read(make([]byte, 1)); err == nil {
		t.Fatal("the app's connection is still open")
	}
	if c.r.muxLive != 0 {
		t.Fatalf("%d places still held", c.r.live)
	}
}

func TestMuxStreamsPerConnectionAreCapped(t *testing.T) {
	port := echoServer(t)
	c := startMux(t, nil)
	for id := uint32(1); id <= muxMaxStreams+1; id++ {
		c.open(id, port)
	}
	for {
		f := c.next()
		if f.typ == muxReset {
			if f.id != muxMaxStreams+1 || f.payload[0] != codeLimit {
				t.Fatalf("RESET limit on the last stream expected, got %+v", f)
			}
			return
		}
	}
}

func TestMuxAClientThatDoesNotReadIsDropped(t *testing.T) {
	stall := muxWriteStall
	muxWriteStall = 2 * time.Second
	defer func() { muxWriteStall = stall }()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	c := startMux(t, nil)
	c.conn.(*net.TCPConn).SetReadBuffer(4096)
	// Refused streams, as fast as it takes them, their RESETs never read.
	go func() {
		var batch []byte
		for id := uint32(1); id < 1<<20; id++ {
			var p [2]byte
			binary.BigEndian.PutUint16(p[:], uint16(closedPort))
			batch = append(batch, muxFrame(muxOpen, id, p[:])...)
			if len(batch) > 64<<10 {
				if _, err := c.conn.Write(batch); err != nil {
					return
				}
				batch = batch[:0]
			}
		}
	}()
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the session did not end")
	}
	if c.r.muxLive != 0 {
		t.Fatalf("%d places still held", c.r.muxLive)
	}
}

func TestMuxAClientsGoawayEndsItsStreams(t *testing.T) {
	c, app := openHeld(t)
	c.send(muxGoaway, 0, append([]byte{codeClosed}, "bye"...))
	app.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := app.Read(make([]byte, 1)); err == nil {
		t.Fatal("the app's connection is still open")
	}
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the session did not end")
	}
}

func TestMuxIdleStreamsHoldUpNoOther(t *testing.T) {
	// Ports that take connections and say nothing (keep-alive HTTP, a database, …).
	silent := silentApp(t)
	echo := echoServer(t)
	c := startMux(t, nil)
	for id := uint32(1); id <= 8; id++ {
		c.open(id, silent)
	}
	c.open(9, echo)
	for opened := 0; opened < 9; {
		if f := c.next(); f.typ == muxOpened {
			opened++
		}
	}
	c.send(muxData, 9, []byte("hello"))
	f := c.nextOf()
	if f.typ != muxData || f.id != 9 || string(f.payload) != "hello" {
		t.Fatalf("the echo on stream 9 expected, got %+v", f)
	}
}
