package main

// relay: the data plane of the server's tunnels (a sandbox's exposed ports). A host-side job, run
// as root by the server (never inside a sandbox), one per server, for as long as the server runs:
//
//	sbx-agent relay --parent PID [--max-connections N] [--max-tunnel-connections N] [--max-client-connections N]
//
// It owns the tunnels' listeners and moves their bytes with splice(2), so that they never pass
// through the server's JavaScript event loop. The server opens and closes tunnels with JSON
// lines on its stdin, each answered by a line on its stdout with the same id:
//
//	{"id":1,"op":"open","sandbox":"sb-…","port":8000,"listen":"127.0.0.1","listenPort":0,"target":"10.1.0.5:8000"}
//	  (listen and target are IP addresses: the relay resolves no name)
//	→ {"id":1,"host":"127.0.0.1","port":41234}        (or {"id":1,"error":"…"})
//	{"id":2,"op":"close","sandbox":"sb-…","port":8000}  (port 0: all of the sandbox's, and its
//	→ {"id":2}                                          tunnel-route connections; answered once
//	                                                    none of their connections is left)
//	{"id":3,"op":"muxStart"} / {"id":3,"op":"muxDrop"}  (a tunnel-route connection handed over on
//	→ {"id":3}                                          the IPC channel as request 3: relay_ipc.go)
//
// It also serves the tunnel route's connections (sb.connect, sb.tunnel: relay_mux.go), which the
// server hands over as descriptors on Node's IPC channel once it has checked them (relay_ipc.go).
//
// A tunnel accepts connections on the listen address, connects each to its target (the
// sandbox's address and port) and relays it (relay_conn.go). Its connections are capped: in all,
// per tunnel, per client address (of all tunnels), and, once half the relay's are taken, per
// sandbox to its fair share (the relay's cap over the number of sandboxes with tunnels), so that
// no sandbox's visitors can take every place from the others'; past a cap a connection is
// closed at once. Idle connections end (relay_conn.go). Listeners listen on the listen
// address's family only (0.0.0.0 is not [::]). Once "close" is answered, no
// connection of the tunnel is left and none will be made: the sandbox's address may go to
// another sandbox. Once started it drops every capability and, with Landlock, all access to
// files and to signalling other processes (it keeps root's uid: a sandbox takes connections
// from root's sockets only). The relay ends when its stdin ends (the server closed it, or died), with the
// server's death (parent-death signal), or when its parent is not the server any more.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// relayFdsPerConnection: a connection's descriptors at most (two sockets, two pipes).
const relayFdsPerConnection = 6

// relayCloseWait: the longest a close waits for its connections' goroutines (they end as soon
// as their sockets are closed; this bounds a bug, not a client).
const relayCloseWait = 10 * time.Second

type relayRequest struct {
	ID         int64  `json:"id"`
	Op         string `json:"op"`
	Sandbox    string `json:"sandbox"`
	Port       int    `json:"port"`
	Listen     string `json:"listen"`
	ListenPort int    `json:"listenPort"`
	Target     string `json:"target"`
}

type relayReply struct {
	ID    int64  `json:"id"`
	Host  string `json:"host,omitempty"`
	Port  int    `json:"port,omitempty"`
	Error string `json:"error,omitempty"`
}

type relay struct {
	maxConnections, maxPerTunnel int
	// maxPerClient: one client address's connections of all tunnels at most (0: no cap).
	maxPerClient int

	mu      sync.Mutex
	tunnels map[string]*tunnel
	live    int
	// (live connections by client address and by sandbox; tunnels by sandbox)
	perClient, perSandbox, sandboxTunnels map[string]int

	out sync.Mutex // stdout's lines

	// The tunnel route's connections (relay_mux.go), each closed when it ends; those adopted and
	// not yet started, by request id; their places and their streams' (muxLive).
	sessions     map[*muxSession]chan struct{}
	pendingMux   map[int64]*muxSession
	muxLive      int
	muxPerClient map[string]int // sessions by client address (capped by maxPerClient)
	mux          *muxBudget
}

type tunnel struct {
	relay   *relay
	sandbox string
	port    int
	target  string
	ln      *net.TCPListener
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	// (the relay's mu guards these)
	conns  map[*tunnelConn]struct{}
	closed bool
}

func (t *tunnel) name() string { return fmt.Sprintf("port %d of sandbox %s", t.port, t.sandbox) }

func cmdRelay(args []string) error {
	// The server's channel for tunnel connections (relay_ipc.go), if it has one, becomes
	// descriptor 3.
	ipcFd := -1
	if n, err := strconv.Atoi(os.Getenv("NODE_CHANNEL_FD")); err == nil && n >= 3 {
		if n != 3 {
			if err := syscall.Dup3(n, 3, 0); err != nil {
				return fmt.Errorf("cannot take the server's channel: %w", err)
			}
		}
		ipcFd = 3
	}
	// Whatever the server's own parent left open is not the relay's to hold (first of all: the
	// Go runtime's own descriptors, its poller's, come with the first file opened).
	keepFrom := 3
	if ipcFd >= 0 {
		keepFrom = 4
	}
	if err := closeInheritedFrom(keepFrom); err != nil {
		return fmt.Errorf("cannot close inherited descriptors: %w", err)
	}
	if err := onHostAsRoot(); err != nil {
		return err
	}
	parent, maxConnections, maxPerTunnel, maxPerClient := -1, 10000, 2000, 1000
	for i := 0; i < len(args); i += 2 {
		if i+1 >= len(args) {
			return fmt.Errorf("%s needs a value", args[i])
		}
		n, err := strconv.Atoi(args[i+1])
		if err != nil || n < 1 {
			return fmt.Errorf("%s must be a positive number, not %q", args[i], args[i+1])
		}
		switch args[i] {
		case "--parent":
			parent = n
		case "--max-connections":
			maxConnections = n
		case "--max-tunnel-connections":
			maxPerTunnel = n
		case "--max-client-connections":
			maxPerClient = n
		default:
			return fmt.Errorf("unknown argument %q (usage: relay --parent PID [--max-connections N] [--max-tunnel-connections N] [--max-client-connections N])", args[i])
		}
	}
	if parent < 0 {
		return errors.New("usage: relay --parent PID [--max-connections N] [--max-tunnel-connections N] [--max-client-connections N]")
	}
	// Dies with the server; a server already gone has left this one to another parent.
	syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0)
	if os.Getppid() != parent {
		return errors.New("the server that started it is gone")
	}
	// (Go has raised the soft open-files limit to the hard one.)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur > 64+relayFdsPerConnection {
		// (Each exposed-port connection may take relayFdsPerConnection, and as many tunnel-route
		// connections and streams one each: relay_ipc.go.)
		if affordable := (lim.Cur - 64) / (relayFdsPerConnection + 1); affordable < uint64(maxConnections) {
			maxConnections = int(affordable)
		}
	}
	// Root's uid stays (sandboxes take connections from root's sockets only), its powers go, and
	// so do root's files and processes (it needs none once started).
	if err := dropAllCaps(); err != nil {
		return fmt.Errorf("cannot drop its capabilities: %w", err)
	}
	if abi, err := landlockNoFiles(); err != nil {
		return fmt.Errorf("cannot restrict itself with Landlock: %w", err)
	} else if abi == 0 {
		relayLog("this kernel has no Landlock: the relay keeps root's access to files")
	}
	if maxPerTunnel > maxConnections {
		maxPerTunnel = maxConnections
	}
	r := &relay{maxConnections: maxConnections, maxPerTunnel: maxPerTunnel, maxPerClient: maxPerClient, tunnels: map[string]*tunnel{}}
	r.counts()
	if ipcFd >= 0 {
		go r.serveIPC(ipcFd)
	}
	lines := bufio.NewScanner(os.Stdin)
	lines.Buffer(make([]byte, 64<<10), 64<<10)
	for lines.Scan() {
		var req relayRequest
		if err := json.Unmarshal(lines.Bytes(), &req); err != nil {
			return fmt.Errorf("a request that is not JSON: %v", err)
		}
		r.handle(req)
	}
	// Its stdin ended: the server let go of it (or died). Its sockets go with it.
	return nil
}

// handle acts on a request in the order they came (a close after an open closes it); a close's
// answer waits (in its own goroutine) for its connections to be gone.
func (r *relay) handle(req relayRequest) {
	switch req.Op {
	case "open":
		host, port, err := r.open(req)
		if err != nil {
			r.reply(relayReply{ID: req.ID, Error: err.Error()})
			return
		}
		r.reply(relayReply{ID: req.ID, Host: host, Port: port})
	case "close":
		closing := r.close(req.Sandbox, req.Port)
		var sessions []chan struct{}
		if req.Port == 0 {
			sessions = r.closeMux(req.Sandbox)
		}
		go func() {
			for _, t := range closing {
				t.waitGone()
			}
			deadline := time.After(relayCloseWait)
			for _, done := range sessions {
				select {
				case <-done:
				case <-deadline:
					relayLog("a tunnel connection to sandbox %s did not end within %s", req.Sandbox, relayCloseWait)
					r.reply(relayReply{ID: req.ID})
					return
				}
			}
			r.reply(relayReply{ID: req.ID})
		}()
	case "muxStart", "muxDrop":
		if err := r.startMux(req.ID, req.Op == "muxDrop"); err != nil {
			r.reply(relayReply{ID: req.ID, Error: err.Error()})
			return
		}
		r.reply(relayReply{ID: req.ID})
	default:
		r.reply(relayReply{ID: req.ID, Error: fmt.Sprintf("unknown op %q", req.Op)})
	}
}

func (r *relay) reply(reply relayReply) {
	line, _ := json.Marshal(reply)
	r.out.Lock()
	defer r.out.Unlock()
	os.Stdout.Write(append(line, '\n'))
}

func tunnelKey(sandbox string, port int) string { return sandbox + " " + strconv.Itoa(port) }

func (r *relay) open(req relayRequest) (string, int, error) {
	if req.Sandbox == "" || len(req.Sandbox) > 256 || req.Port < 1 || req.Port > 65535 {
		return "", 0, errors.New("a tunnel needs a sandbox and a port (1-65535)")
	}
	if net.ParseIP(req.Listen) == nil || req.ListenPort < 0 || req.ListenPort > 65535 {
		return "", 0, errors.New("a tunnel needs an IP address to listen on (and a port 0-65535)")
	}
	host, port, err := net.SplitHostPort(req.Target)
	if err != nil || net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("the target must be an IP address and a port, not %q", req.Target)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", 0, fmt.Errorf("the target must be an IP address and a port, not %q", req.Target)
	}
	key := tunnelKey(req.Sandbox, req.Port)
	r.mu.Lock()
	_, taken := r.tunnels[key]
	r.mu.Unlock()
	if taken {
		return "", 0, fmt.Errorf("port %d of sandbox %s has a tunnel already", req.Port, req.Sandbox)
	}
	// Its own family only: "0.0.0.0" on tcp would take IPv6's wildcard too.
	network := "tcp6"
	if net.ParseIP(req.Listen).To4() != nil {
		network = "tcp4"
	}
	ln, err := net.Listen(network, net.JoinHostPort(req.Listen, strconv.Itoa(req.ListenPort)))
	if err != nil {
		return "", 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &tunnel{
		relay: r, sandbox: req.Sandbox, port: req.Port, target: req.Target,
		ln: ln.(*net.TCPListener), ctx: ctx, cancel: cancel, conns: map[*tunnelConn]struct{}{},
	}
	r.mu.Lock()
	r.tunnels[key] = t
	r.counts()
	r.sandboxTunnels[t.sandbox]++
	r.mu.Unlock()
	t.wg.Add(1)
	go t.accept()
	addr := ln.Addr().(*net.TCPAddr)
	return addr.IP.String(), addr.Port, nil
}

// close closes the sandbox's tunnels (port 0: all of them): their listeners, their connections
// (and dials under way); it returns them, for waitGone.
func (r *relay) close(sandbox string, port int) []*tunnel {
	r.mu.Lock()
	var closing []*tunnel
	for key, t := range r.tunnels {
		if t.sandbox != sandbox || (port != 0 && t.port != port) {
			continue
		}
		delete(r.tunnels, key)
		t.closed = true
		closing = append(closing, t)
		r.counts()
		if r.sandboxTunnels[t.sandbox]--; r.sandboxTunnels[t.sandbox] <= 0 {
			delete(r.sandboxTunnels, t.sandbox)
		}
	}
	var conns []*tunnelConn
	for _, t := range closing {
		for c := range t.conns {
			conns = append(conns, c)
		}
	}
	r.mu.Unlock()
	for _, t := range closing {
		t.cancel()
		t.ln.Close()
	}
	for _, c := range conns {
		c.abort()
	}
	return closing
}

// closeMux ends the sandbox's tunnel connections (GOAWAY "notRunning": it has finished): their
// streams' connections are closed and their dials given up at once. It returns what closes
// when each has ended.
func (r *relay) closeMux(sandbox string) []chan struct{} {
	r.mu.Lock()
	var ending, waiting []*muxSession
	var done []chan struct{}
	for s, d := range r.sessions {
		if s.sandbox == sandbox {
			ending = append(ending, s)
			done = append(done, d)
		}
	}
	for id, s := range r.pendingMux {
		if s.sandbox == sandbox {
			delete(r.pendingMux, id)
			waiting = append(waiting, s)
		}
	}
	r.mu.Unlock()
	for _, s := range waiting {
		s.startTimer.Stop()
		s.closed()
		r.muxGone(s)
	}
	for _, s := range ending {
		if s.started.Load() {
			s.goAway(codeNotRunning, fmt.Sprintf("sandbox %s has finished", sandbox))
		}
	}
	return done
}

// waitGone waits (bounded) until the tunnel's accept loop and connections have ended.
func (t *tunnel) waitGone() {
	gone := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(gone)
	}()
	select {
	case <-gone:
	case <-time.After(relayCloseWait):
		relayLog("%s: its connections did not end within %s", t.name(), relayCloseWait)
	}
}

func (t *tunnel) accept() {
	defer t.wg.Done()
	var logged time.Time
	for {
		conn, err := t.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// (Out of descriptors, say: a moment for some to be let go.)
			if time.Since(logged) > 10*time.Second {
				relayLog("%s: accept: %v", t.name(), err)
				logged = time.Now()
			}
			time.Sleep(100 * time.Millisecond)
			continue
		}
		c := t.admit(conn)
		if c == nil {
			conn.SetLinger(0)
			conn.Close()
			continue
		}
		go c.serve()
	}
}

// counts (r.mu held) makes the count maps of a relay made without them.
func (r *relay) counts() {
	if r.perClient == nil {
		r.perClient, r.perSandbox, r.sandboxTunnels = map[string]int{}, map[string]int{}, map[string]int{}
	}
	if r.sessions == nil {
		r.sessions = map[*muxSession]chan struct{}{}
		r.pendingMux = map[int64]*muxSession{}
		r.muxPerClient = map[string]int{}
		r.mux = &muxBudget{limits: defaultMuxLimits}
	}
}

// admit takes a connection on if the caps allow and the tunnel is open (nil: refused).
func (t *tunnel) admit(conn *net.TCPConn) *tunnelConn {
	r := t.relay
	clientIP := ""
	if addr, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		clientIP = addr.IP.String()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts()
	if t.closed || r.live >= r.maxConnections || len(t.conns) >= r.maxPerTunnel {
		return nil
	}
	if r.maxPerClient > 0 && r.perClient[clientIP] >= r.maxPerClient {
		return nil
	}
	// Past half the relay's places, a sandbox's tunnels take no more than its fair share.
	if sandboxes := len(r.sandboxTunnels); r.live*2 >= r.maxConnections && sandboxes > 1 &&
		r.perSandbox[t.sandbox]*sandboxes >= r.maxConnections {
		return nil
	}
	c := newTunnelConn(t, conn, clientIP)
	t.conns[c] = struct{}{}
	r.live++
	r.perClient[clientIP]++
	r.perSandbox[t.sandbox]++
	t.wg.Add(1)
	return c
}

func (t *tunnel) release(c *tunnelConn) {
	r := t.relay
	r.mu.Lock()
	if _, ok := t.conns[c]; ok {
		delete(t.conns, c)
		r.live--
		if r.perClient[c.clientIP]--; r.perClient[c.clientIP] <= 0 {
			delete(r.perClient, c.clientIP)
		}
		if r.perSandbox[t.sandbox]--; r.perSandbox[t.sandbox] <= 0 {
			delete(r.perSandbox, t.sandbox)
		}
	}
	r.mu.Unlock()
	t.wg.Done()
}

func relayLog(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "sbx-agent relay: "+format+"\n", args...)
}
