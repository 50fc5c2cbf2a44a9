package main

// The relay's second channel from the server: the tunnel route's connections (relay_mux.go),
// handed over as descriptors. Node passes a socket to a child only over its IPC channel (stdio
// "ipc", its number in NODE_CHANNEL_FD), so that is what this speaks: newline-delimited JSON
// both ways, a descriptor riding (SCM_RIGHTS) with the first bytes of the line that carries it:
//
//	{"cmd":"NODE_HANDLE","type":"net.Socket","msg":{"id":7,"op":"mux","sandbox":"sb-…","target":"10.1.0.5"},"key":"…"}
//	  → {"cmd":"NODE_HANDLE_ACK"} on this channel (Node sends no other handle until it comes),
//	    and the request's answer on stdout, as every request's: {"id":7} or {"id":7,"error":"…"}
//	    (then the server closes its own copy and says on stdin {"op":"muxStart","id":7}, or
//	    "muxDrop": only then does the relay send READY and read the connection)
//	{"cmd":"NODE_SOCKET_NOTIFY_CLOSE","key":K} → {"cmd":"NODE_SOCKET_ALL_CLOSED","key":K}
//	{"cmd":"NODE_SOCKET_GET_COUNT","key":K}    → {"cmd":"NODE_SOCKET_COUNT","key":K,"count":N}
//	  (Node asks these of a child holding sockets of one of its servers, when that server closes
//	  or counts its connections: the relay's connections are the relay's to end, so it answers
//	  at once.)
//
// Only the server holds the other end; still, every descriptor that comes is checked (a
// connected TCP socket, or it is closed) and one that comes without a handle line is closed.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// ipcMaxLine: the longest line the channel may carry.
const ipcMaxLine = 64 << 10

type ipcMessage struct {
	Cmd  string          `json:"cmd"`
	Type string          `json:"type"`
	Msg  json.RawMessage `json:"msg"`
	Key  json.RawMessage `json:"key"`
}

type ipcChannel struct {
	fd int
	mu sync.Mutex // lines out
}

func (c *ipcChannel) send(v interface{}) {
	line, _ := json.Marshal(v)
	line = append(line, '\n')
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(line) > 0 && c.fd >= 0 {
		n, err := syscall.Write(c.fd, line)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return
		}
		line = line[n:]
	}
}

// serveIPC reads the channel until it ends.
func (r *relay) serveIPC(fd int) {
	if err := syscall.SetNonblock(fd, false); err != nil {
		relayLog("the server's channel: %v", err)
		return
	}
	c := &ipcChannel{fd: fd}
	// (Once this stops reading, the channel closes: the server sees it disconnect and hands
	// nothing more over, rather than wait for answers that would never come.)
	defer func() {
		c.mu.Lock()
		syscall.Close(fd)
		c.fd = -1
		c.mu.Unlock()
	}()
	buf := make([]byte, ipcMaxLine)
	oob := make([]byte, syscall.CmsgSpace(4*8))
	var pending []byte
	var fds []int
	defer func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}()
	for {
		n, oobn, flags, _, err := syscall.Recvmsg(fd, buf, oob, syscall.MSG_CMSG_CLOEXEC)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return
		}
		if oobn > 0 {
			got, perr := receivedFds(oob[:oobn])
			fds = append(fds, got...)
			if perr != nil {
				relayLog("the server's channel: %v", perr)
			}
		}
		if flags&syscall.MSG_CTRUNC != 0 {
			relayLog("the server's channel: descriptors were cut off")
		}
		pending = append(pending, buf[:n]...)
		for {
			end := bytes.IndexByte(pending, '\n')
			if end < 0 {
				break
			}
			line := pending[:end]
			pending = pending[end+1:]
			fds = r.ipcLine(c, line, fds)
		}
		if len(pending) > ipcMaxLine {
			relayLog("the server's channel: a line longer than %d bytes", ipcMaxLine)
			return
		}
		// Descriptors with no handle line to take them: none may pile up.
		if len(pending) == 0 {
			for _, fd := range fds {
				syscall.Close(fd)
			}
			fds = nil
		}
	}
}

func receivedFds(oob []byte) ([]int, error) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	for i := range msgs {
		got, err := syscall.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

// ipcLine acts on one line; it answers the descriptors not taken.
func (r *relay) ipcLine(c *ipcChannel, line []byte, fds []int) []int {
	var m ipcMessage
	if err := json.Unmarshal(line, &m); err != nil {
		relayLog("the server's channel: a line that is not JSON")
		return fds
	}
	switch m.Cmd {
	case "NODE_HANDLE":
		fd := -1
		if len(fds) > 0 {
			fd, fds = fds[0], fds[1:]
		}
		c.send(map[string]string{"cmd": "NODE_HANDLE_ACK"})
		var req relayRequest
		if err := json.Unmarshal(m.Msg, &req); err != nil || req.Op != "mux" {
			if fd >= 0 {
				syscall.Close(fd)
			}
			relayLog("the server's channel: a handle with a request that is not a tunnel connection")
			if err == nil {
				r.reply(relayReply{ID: req.ID, Error: fmt.Sprintf("unknown op %q", req.Op)})
			}
			return fds
		}
		if err := r.adopt(req, fd); err != nil {
			r.reply(relayReply{ID: req.ID, Error: err.Error()})
			return fds
		}
		r.reply(relayReply{ID: req.ID})
	case "NODE_SOCKET_NOTIFY_CLOSE":
		c.send(map[string]interface{}{"cmd": "NODE_SOCKET_ALL_CLOSED", "key": m.Key})
	case "NODE_SOCKET_GET_COUNT":
		r.mu.Lock()
		count := len(r.sessions)
		r.mu.Unlock()
		c.send(map[string]interface{}{"cmd": "NODE_SOCKET_COUNT", "key": m.Key, "count": count})
	}
	return fds
}

// adopt starts a tunnel connection on fd (closed on failure).
func (r *relay) adopt(req relayRequest, fd int) error {
	if fd < 0 {
		return errors.New("no descriptor came with the tunnel connection")
	}
	file := os.NewFile(uintptr(fd), "tunnel")
	conn, err := net.FileConn(file) // (a duplicate: the file is closed below either way)
	file.Close()
	if err != nil {
		return fmt.Errorf("the tunnel connection's descriptor: %v", err)
	}
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		conn.Close()
		return errors.New("the tunnel connection is not a TCP connection")
	}
	if req.Sandbox == "" || len(req.Sandbox) > 256 || net.ParseIP(req.Target) == nil {
		tcp.Close()
		return errors.New("a tunnel connection needs a sandbox and its address")
	}
	clientIP := ""
	if addr, ok := tcp.RemoteAddr().(*net.TCPAddr); ok {
		clientIP = addr.IP.String()
	}
	s := newMuxSession(r, tcp, req.Sandbox, req.Target)
	s.clientIP = clientIP
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts()
	if _, taken := r.pendingMux[req.ID]; taken || r.muxLive >= r.maxConnections ||
		r.maxPerClient > 0 && r.muxPerClient[clientIP] >= r.maxPerClient {
		tcp.Close()
		return errors.New("the relay holds as many tunnel connections as it may (in all, or from that address)")
	}
	r.muxPerClient[clientIP]++
	r.muxLive++
	r.sessions[s] = make(chan struct{})
	r.pendingMux[req.ID] = s
	// One the server never starts (it gave up waiting for this answer) does not stay.
	id := req.ID
	s.startTimer = time.AfterFunc(muxStartWait, func() {
		r.mu.Lock()
		waiting := r.pendingMux[id] == s
		if waiting {
			delete(r.pendingMux, id)
		}
		r.mu.Unlock()
		if waiting {
			s.closed()
			r.muxGone(s)
		}
	})
	return nil
}

// muxStartWait: how long an adopted connection waits for the server's muxStart.
var muxStartWait = 30 * time.Second

// startMux starts the session adopted as request id, once the server has let go of its copy of
// the socket (READY goes first: a client sends nothing before it, so nothing was read there);
// drop closes it instead.
func (r *relay) startMux(id int64, drop bool) error {
	r.mu.Lock()
	s, ok := r.pendingMux[id]
	delete(r.pendingMux, id)
	if ok && !drop {
		s.started.Store(true) // (under mu: closeMux sees it started, or finds it pending)
	}
	r.mu.Unlock()
	if !ok {
		return fmt.Errorf("no tunnel connection %d waits to start", id)
	}
	s.startTimer.Stop()
	if drop {
		s.closed()
		r.muxGone(s)
		return nil
	}
	go s.run()
	return nil
}

// muxGone: s has ended (run returns).
func (r *relay) muxGone(s *muxSession) {
	r.mu.Lock()
	done, ok := r.sessions[s]
	if ok {
		delete(r.sessions, s)
		r.muxLive--
		if r.muxPerClient[s.clientIP]--; r.muxPerClient[s.clientIP] <= 0 {
			delete(r.muxPerClient, s.clientIP)
		}
	}
	r.mu.Unlock()
	if ok {
		close(done)
	}
}

// takeMuxStream counts a tunnel connection's stream against the relay's descriptors (false: no
// room). Tunnel connections and their streams have places of their own (maxConnections of
// them, a sixth of the descriptors the exposed ports' connections may take), so that they
// never take those of the exposed ports' visitors.
func (r *relay) takeMuxStream() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.muxLive >= r.maxConnections {
		return false
	}
	r.muxLive++
	return true
}

func (r *relay) giveMuxStream() {
	r.mu.Lock()
	r.muxLive--
	r.mu.Unlock()
}
