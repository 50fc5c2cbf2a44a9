package main

// The tunnel route's data plane (sb.connect, sb.tunnel: the contract is @sbx/proto's
// port-mux.ts): a connection the server has upgraded to `sbx.tunnel.v1`, checked (its token,
// its sandbox) and handed over (relay_ipc.go), carrying many streams, each a TCP connection to a
// port of that one sandbox, which the relay dials at the sandbox's address. It does what the
// server's JavaScript session does (server-kit's tunnel-session.ts) frame for frame, message for
// message, so that a client cannot tell them apart; the bytes just never pass through the
// server's event loop.
//
// Everything the client sends is hostile until checked: frames are parsed by the rules of
// port-mux.ts (a frame that breaks them ends the connection with GOAWAY "protocol"), a stream
// may only send what its window allows, and what a client can make the relay hold is bounded as
// on the JavaScript path (muxLimits): streams per connection and over the relay (each one
// descriptor), dials in flight (each with a timeout), and the window bytes granted, per
// connection and over the relay. Bytes toward a client that stops reading are not queued: a
// write that cannot finish within muxWriteStall ends the connection. The sandbox's own bytes
// are never parsed, only framed.
//
// Goroutines: one reads the client's frames; each stream has one dialing, then one writing the
// client's bytes to the port (from a queue its window bounds) and one reading the port's bytes
// (as far as the client's window for it allows). Frames go out whole, one at a time. When the
// sandbox ends, the server closes it here (relay.go "close"): GOAWAY "notRunning", every
// stream's connection closed and every dial given up before the close is answered, so that the
// sandbox's address may go to another sandbox.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"
)

const (
	muxHeadBytes  = 9
	muxMaxData    = 256 << 10
	muxWindow     = 2 << 20
	muxMaxStreams = 256
	muxMaxReason  = 1000
)

const (
	muxOpen   = 1
	muxOpened = 2
	muxData   = 3
	muxWin    = 4
	muxEnd    = 5
	muxReset  = 6
	muxReady  = 7
	muxGoaway = 8
	muxPing   = 9
	muxPong   = 10
)

// Codes of RESET and GOAWAY (port-mux.ts MUX_CODES).
const (
	codeInvalid    = 1
	codeNotRunning = 4
	codeInternal   = 5
	codeRefused    = 7
	codeClosed     = 8
	codeProtocol   = 9
	codeLimit      = 10
)

// muxLimits: what clients may hold (server-kit's tunnel-budget.ts, the same defaults).
type muxLimits struct {
	streamsPerConnection, streams, dials int
	dialTimeout                          time.Duration
	windowPerConnection, window          int64
	minStreamWindow                      int64
}

var defaultMuxLimits = muxLimits{
	streamsPerConnection: muxMaxStreams,
	streams:              4096,
	dials:                256,
	dialTimeout:          10 * time.Second,
	windowPerConnection:  16 << 20,
	window:               256 << 20,
	minStreamWindow:      64 << 10,
}

var (
	// muxWriteStall: how long one frame may take to go to a client before the connection is
	// taken for one that does not read, and ends.
	muxWriteStall = 60 * time.Second
	// muxKeepAlive: silence after which TCP keepalive probes look for a client that vanished.
	muxKeepAlive = 30 * time.Second
	// muxCloseGrace: how long a client has to read a GOAWAY before its connection goes.
	muxCloseGrace = time.Second
	// muxMaxAsyncWrites: RESET frames waiting to go to a client, at most.
	muxMaxAsyncWrites = 64
	// muxOutBytes: the ports' bytes read and not yet written to the client, per connection, at
	// most (what its streams' readers hold while the client is slow to read).
	muxOutBytes int64 = 1 << 20
	// muxWriteSlice: a frame goes out in slices of at most this, each with muxWriteStall to go.
	muxWriteSlice = 64 << 10
)

// muxBudget: the relay's counts over all its connections (the relay's muBudget guards them).
type muxBudget struct {
	mu      sync.Mutex
	limits  muxLimits
	streams int
	dials   int
	window  int64
}

type muxProtocolError struct{ msg string }

func (e *muxProtocolError) Error() string { return e.msg }

func protocolErrorf(format string, args ...interface{}) error {
	return &muxProtocolError{fmt.Sprintf(format, args...)}
}

// Buffers for DATA payloads in six sizes: a payload takes the smallest that holds it (and those
// under the smallest are gathered into one), so that what the relay holds for a stream's queue
// is at most twice what its window lets in, and one buffer more.
var dataSizes = [...]int{16 << 10, 32 << 10, 64 << 10, 128 << 10, 192 << 10, muxHeadBytes + muxMaxData}

var dataPools [len(dataSizes)]sync.Pool

func init() {
	for i := range dataPools {
		size := dataSizes[i]
		dataPools[i].New = func() interface{} { b := make([]byte, size); return &b }
	}
}

func getBuf(n int) *[]byte {
	for i, size := range dataSizes {
		if n <= size {
			return dataPools[i].Get().(*[]byte)
		}
	}
	panic("a buffer larger than a frame")
}

func putBuf(bp *[]byte) {
	for i, size := range dataSizes {
		if len(*bp) == size {
			dataPools[i].Put(bp)
			return
		}
	}
}

// muxChunk: client bytes queued toward a port; bp, when set, goes back to its pool once written.
type muxChunk struct {
	b     []byte
	bp    *[]byte
	small bool // gathering small payloads
}

// muxSmallChunk: DATA payloads under this size are gathered into buffers of this size (a client
// sending its window as one-byte frames holds no more than its window).
const muxSmallChunk = 16 << 10

type muxSession struct {
	relay    *relay
	conn     *net.TCPConn
	sandbox  string
	target   string // the sandbox's address (an IP)
	clientIP string // where the connection comes from (its cap, relay_ipc.go)
	budget   *muxBudget
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup // its goroutines

	started    atomic.Bool // run has begun (relay_ipc.go startMux; set under the relay's mu)
	startTimer *time.Timer // drops it if it is never started (relay_ipc.go adopt)
	// asyncWrites: RESET frames waiting to go (each in a goroutine of its own); past
	// muxMaxAsyncWrites the client is taken for one that does not read, and dropped.
	asyncWrites int
	dropping    bool
	outHeld     int64      // (mu) bytes the streams' readers hold (muxOutBytes)
	outRoom     *sync.Cond // on mu: outHeld fell

	wmu         sync.Mutex    // one frame at a time toward the client
	deadlineSet time.Time     // (wmu) when the write deadline was last moved
	stall       time.Duration // muxWriteStall when it started

	scratch []byte // (the reading goroutine's) small payloads, before they are queued

	mu      sync.Mutex
	streams map[uint32]*muxStream
	lastID  uint32
	slots   int   // streams holding a slot: in streams, or over while their dial has not settled
	held    int64 // window bytes its streams hold
	ended   bool
}

type muxStream struct {
	id   uint32
	port int
	cond *sync.Cond // on the session's mu: its queue, its credit, its end

	conn     *net.TCPConn       // once dialed
	dialing  context.CancelFunc // until the dial has settled
	released bool
	over     bool

	// the client's bytes toward the port
	queue       []muxChunk
	clientEnded bool
	portGone    bool // the port's connection can take no more
	received    int64
	allowed     int64
	taken       int64
	held        int64
	wroteEnd    bool

	// the port's bytes toward the client
	credit    int64
	portEnded bool
	endSent   bool
}

func newMuxSession(r *relay, conn *net.TCPConn, sandbox, target string) *muxSession {
	ctx, cancel := context.WithCancel(context.Background())
	s := &muxSession{
		relay: r, conn: conn, sandbox: sandbox, target: target, budget: r.mux,
		ctx: ctx, cancel: cancel, streams: map[uint32]*muxStream{}, stall: muxWriteStall,
	}
	s.outRoom = sync.NewCond(&s.mu)
	return s
}

// run serves the connection until it ends (the caller has counted it in the relay).
func (s *muxSession) run() {
	defer s.relay.muxGone(s)
	s.conn.SetKeepAlive(true)
	s.conn.SetKeepAlivePeriod(muxKeepAlive)
	s.conn.SetNoDelay(true)
	if s.write(muxFrame(muxReady, 0, nil)) != nil {
		s.closed()
		s.wg.Wait()
		return
	}
	err := s.read(bufio.NewReaderSize(s.conn, 16<<10))
	var perr *muxProtocolError
	switch {
	case err == nil: // the client's GOAWAY: its connection goes after a moment (control)
	case errors.As(err, &perr):
		s.goAway(codeProtocol, perr.msg)
	default:
		s.closed()
	}
	s.wg.Wait()
}

// read parses the client's frames until the connection ends or breaks the rules.
func (s *muxSession) read(br *bufio.Reader) error {
	var head [muxHeadBytes]byte
	control := make([]byte, 1+muxMaxReason)
	for {
		if _, err := io.ReadFull(br, head[:]); err != nil {
			return err
		}
		typ := int(head[0])
		id := binary.BigEndian.Uint32(head[1:5])
		length := binary.BigEndian.Uint32(head[5:9])
		if err := muxLengthProblem(typ, length); err != nil {
			return err
		}
		if muxStreamFrame(typ) != (id != 0) {
			return protocolErrorf("a frame of type %d on stream %d", typ, id)
		}
		if typ == muxData {
			if err := s.data(br, id, int(length)); err != nil {
				return err
			}
			continue
		}
		payload := control[:length]
		if _, err := io.ReadFull(br, payload); err != nil {
			return err
		}
		done, err := s.control(typ, id, payload)
		if err != nil || done {
			return err
		}
	}
}

func muxStreamFrame(typ int) bool {
	switch typ {
	case muxOpen, muxOpened, muxData, muxWin, muxEnd, muxReset:
		return true
	}
	return false
}

func muxLengthProblem(typ int, length uint32) error {
	exact := func(n uint32) error {
		if length == n {
			return nil
		}
		return protocolErrorf("a frame of type %d carries %d bytes, not %d", typ, n, length)
	}
	switch typ {
	case muxOpen:
		return exact(2)
	case muxEnd, muxReady:
		return exact(0)
	case muxOpened, muxWin:
		return exact(4)
	case muxPing, muxPong:
		return exact(8)
	case muxReset, muxGoaway:
		if length >= 1 && length <= 1+muxMaxReason {
			return nil
		}
		return protocolErrorf("a closing frame of %d bytes", length)
	case muxData:
		if length >= 1 && length <= muxMaxData {
			return nil
		}
		return protocolErrorf("a DATA frame of %d bytes", length)
	}
	return protocolErrorf("unknown frame type %d", typ)
}

// data takes a DATA frame's payload (length bytes, still unread in br) for stream id.
func (s *muxSession) data(br *bufio.Reader, id uint32, length int) error {
	s.mu.Lock()
	st := s.streams[id]
	var problem string
	var code byte = codeProtocol
	switch {
	case s.ended:
		s.mu.Unlock()
		return net.ErrClosed
	case st == nil:
		last := s.lastID
		s.mu.Unlock()
		if id > last {
			return protocolErrorf("DATA on stream %d, which was never opened", id)
		}
		_, err := br.Discard(length) // a stream that is over: the bytes crossed its end
		return err
	case st.conn == nil:
		problem = fmt.Sprintf("DATA on stream %d before it was OPENED", id)
	case st.clientEnded:
		problem = fmt.Sprintf("DATA on stream %d after its END", id)
	case st.portGone:
		code, problem = codeClosed, fmt.Sprintf("port %d of sandbox %s closed the connection", st.port, s.sandbox)
	default:
		st.received += int64(length)
		if st.received > st.allowed {
			problem = fmt.Sprintf("stream %d sent past its window", id)
		}
	}
	if problem != "" {
		s.resetLocked(st, code, problem)
		s.mu.Unlock()
		_, err := br.Discard(length)
		return err
	}
	s.mu.Unlock()
	var bp *[]byte
	var payload []byte
	if length >= muxSmallChunk {
		bp = getBuf(length)
		payload = (*bp)[:length]
	} else {
		if s.scratch == nil {
			s.scratch = make([]byte, muxSmallChunk)
		}
		payload = s.scratch[:length]
	}
	if _, err := io.ReadFull(br, payload); err != nil {
		if bp != nil {
			putBuf(bp)
		}
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.over {
		if bp != nil {
			putBuf(bp)
		}
		return nil
	}
	if bp != nil {
		st.queue = append(st.queue, muxChunk{b: payload, bp: bp})
	} else if n := len(st.queue); n > 0 && st.queue[n-1].small && cap(st.queue[n-1].b)-len(st.queue[n-1].b) >= length {
		st.queue[n-1].b = append(st.queue[n-1].b, payload...)
	} else {
		small := getBuf(muxSmallChunk)
		b := append((*small)[:0], payload...)
		st.queue = append(st.queue, muxChunk{b: b, bp: small, small: true})
	}
	st.cond.Broadcast()
	return nil
}

// control acts on a frame other than DATA; done: the client said GOAWAY.
func (s *muxSession) control(typ int, id uint32, payload []byte) (done bool, err error) {
	switch typ {
	case muxOpen:
		return false, s.open(id, int(binary.BigEndian.Uint16(payload)))
	case muxWin:
		increment := int64(binary.BigEndian.Uint32(payload))
		if increment == 0 {
			return false, protocolErrorf("a WINDOW of 0 on stream %d", id)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		st := s.streams[id]
		if st == nil {
			return false, nil
		}
		st.credit += increment
		if st.credit > 1<<31 {
			s.resetLocked(st, codeProtocol, fmt.Sprintf("stream %d's window overflowed", id))
			return false, nil
		}
		st.cond.Broadcast()
		return false, nil
	case muxEnd:
		s.mu.Lock()
		defer s.mu.Unlock()
		st := s.streams[id]
		if st == nil || st.clientEnded {
			return false, nil
		}
		if st.conn == nil {
			s.resetLocked(st, codeProtocol, fmt.Sprintf("END on stream %d before it was OPENED", id))
			return false, nil
		}
		st.clientEnded = true
		st.cond.Broadcast() // (its writer ends the port's side once the queue has gone)
		return false, nil
	case muxReset, muxGoaway:
		if !utf8.Valid(payload[1:]) {
			return false, protocolErrorf("a closing frame on stream %d whose reason is not UTF-8", id)
		}
		if typ == muxGoaway {
			// (Its end passed on once what was sent has gone; the connection goes a moment later.)
			if s.endStreams() {
				s.wmu.Lock()
				s.conn.CloseWrite()
				s.wmu.Unlock()
				time.AfterFunc(muxCloseGrace, func() { s.conn.Close() })
			}
			return true, nil
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if st := s.streams[id]; st != nil {
			s.removeLocked(st)
			if st.dialing != nil {
				st.dialing()
			}
			if st.conn != nil {
				st.conn.SetLinger(0) // (a reset, as the client's was)
				st.conn.Close()
			}
		}
		return false, nil
	case muxPing:
		// (Written here: a client that pings without reading stops its own reading.)
		pong := muxFrame(muxPong, 0, payload)
		return false, s.write(pong)
	case muxPong:
		return false, nil
	case muxOpened:
		if w := binary.BigEndian.Uint32(payload); w == 0 || w > muxWindow {
			return false, protocolErrorf("an OPENED window of %d on stream %d", w, id)
		}
	}
	return false, protocolErrorf("a client does not send frames of type %d", typ)
}

func (s *muxSession) open(id uint32, port int) error {
	s.mu.Lock()
	if id <= s.lastID {
		last := s.lastID
		s.mu.Unlock()
		return protocolErrorf("stream %d opened after stream %d", id, last)
	}
	s.lastID = id
	if s.ended {
		s.mu.Unlock()
		return net.ErrClosed
	}
	b := s.budget
	limits := b.limits
	b.mu.Lock()
	var code byte = codeLimit
	refusal := ""
	switch {
	case s.slots >= limits.streamsPerConnection:
		refusal = fmt.Sprintf("more than %d connections at once on one tunnel", limits.streamsPerConnection)
	case b.streams >= limits.streams:
		refusal = fmt.Sprintf("the server holds %d tunnel connections already", limits.streams)
	case b.dials >= limits.dials:
		refusal = fmt.Sprintf("the server is opening %d tunnel connections already", limits.dials)
	case port < 1:
		code, refusal = codeInvalid, fmt.Sprintf("invalid port %d: a port is a whole number from 1 to 65535", port)
	case !s.relay.takeMuxStream(): // (the relay's descriptors)
		refusal = fmt.Sprintf("the server holds %d tunnel connections already", limits.streams)
	}
	if refusal != "" {
		b.mu.Unlock()
		s.mu.Unlock()
		return s.write(muxClosing(muxReset, id, code, refusal))
	}
	b.streams++
	b.dials++
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, limits.dialTimeout)
	st := &muxStream{id: id, port: port, dialing: cancel, credit: muxWindow}
	st.cond = sync.NewCond(&s.mu)
	s.streams[id] = st
	s.slots++
	s.wg.Add(1)
	s.mu.Unlock()
	go s.dial(ctx, cancel, st)
	return nil
}

func (s *muxSession) dial(ctx context.Context, cancel context.CancelFunc, st *muxStream) {
	defer s.wg.Done()
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(s.target, strconv.Itoa(st.port)))
	timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
	cancel()
	s.mu.Lock()
	st.dialing = nil
	s.budget.mu.Lock()
	s.budget.dials--
	s.budget.mu.Unlock()
	if st.over || s.ended {
		s.releaseLocked(st)
		s.mu.Unlock()
		if conn != nil {
			conn.Close()
		}
		return
	}
	if err != nil {
		var msg string
		if timedOut {
			msg = fmt.Sprintf("port %d of sandbox %s did not answer within %d s", st.port, s.sandbox, int(s.budget.limits.dialTimeout/time.Second))
		} else {
			msg = fmt.Sprintf("port %d of sandbox %s cannot be reached: %s", st.port, s.sandbox, dialProblem(err))
		}
		s.resetLocked(st, codeRefused, msg)
		s.mu.Unlock()
		return
	}
	st.conn = conn.(*net.TCPConn)
	st.conn.SetNoDelay(true)
	window := s.windowLocked(st)
	st.allowed = window
	s.holdLocked(st, window)
	s.mu.Unlock()
	var w [4]byte
	binary.BigEndian.PutUint32(w[:], uint32(window))
	if s.write(muxFrame(muxOpened, st.id, w[:])) != nil {
		return
	}
	s.wg.Add(2)
	go s.toPort(st)
	go s.fromPort(st)
}

// toPort writes the client's bytes to the port's connection as they come, granting the client
// more as the connection takes them, and ends the port's side after the client's END.
func (s *muxSession) toPort(st *muxStream) {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		for len(st.queue) == 0 && !st.over && !st.clientEnded {
			st.cond.Wait()
		}
		if st.over {
			s.mu.Unlock()
			return
		}
		if len(st.queue) == 0 { // the client ended, all its bytes written
			gone := st.portGone
			s.mu.Unlock()
			if !gone {
				st.conn.CloseWrite()
			}
			s.mu.Lock()
			st.wroteEnd = true
			s.finishIfDoneLocked(st)
			s.mu.Unlock()
			return
		}
		c := st.queue[0]
		st.queue[0] = muxChunk{}
		st.queue = st.queue[1:]
		s.mu.Unlock()
		_, err := st.conn.Write(c.b)
		n := len(c.b)
		if c.bp != nil {
			putBuf(c.bp)
		}
		s.mu.Lock()
		if st.over {
			s.mu.Unlock()
			return
		}
		if err != nil {
			if !st.portEnded {
				s.resetLocked(st, codeClosed, fmt.Sprintf("port %d of sandbox %s: the connection was closed by the port's side", st.port, s.sandbox))
				s.mu.Unlock()
				return
			}
			// The port ended its side and then closed: the stream waits for the client's END;
			// what the client sends meanwhile resets it (data).
			st.portGone = true
			s.dropQueueLocked(st)
			s.mu.Unlock()
			continue
		}
		st.taken += int64(n)
		s.holdLocked(st, st.allowed-st.taken)
		increment := s.grantLocked(st)
		s.mu.Unlock()
		if increment > 0 {
			var w [4]byte
			binary.BigEndian.PutUint32(w[:], uint32(increment))
			if s.write(muxFrame(muxWin, st.id, w[:])) != nil {
				return
			}
		}
	}
}

// fromPort reads the port's bytes as far as the client's window allows and sends them as DATA;
// END once the port's side has ended.
func (s *muxSession) fromPort(st *muxStream) {
	defer s.wg.Done()
	raw, err := st.conn.SyscallConn()
	if err != nil {
		s.mu.Lock()
		s.resetLocked(st, codeInternal, fmt.Sprintf("port %d of sandbox %s could not be read", st.port, s.sandbox))
		s.mu.Unlock()
		return
	}
	for {
		s.mu.Lock()
		for st.credit <= 0 && !st.over {
			st.cond.Wait()
		}
		over := st.over
		s.mu.Unlock()
		if over {
			return
		}
		// Room (of muxOutBytes) and a buffer are taken only for a read that finds bytes (or the
		// end): a stream parked until its port has some holds neither, so idle streams take
		// nothing from the others.
		var n int64
		reserved, noRoom := false, false
		var bp *[]byte
		got := 0
		var rerr error
		err := raw.Read(func(fd uintptr) bool {
			s.mu.Lock()
			if st.over {
				s.mu.Unlock()
				return true
			}
			n = st.credit
			if n > muxMaxData {
				n = muxMaxData
			}
			if s.outHeld+n > muxOutBytes && s.outHeld > 0 {
				s.mu.Unlock()
				noRoom = true
				return true
			}
			s.outHeld += n
			s.mu.Unlock()
			reserved = true
			bp = getBuf(muxHeadBytes + int(n))
			got, rerr = syscall.Read(int(fd), (*bp)[muxHeadBytes:muxHeadBytes+int(n)])
			if rerr == syscall.EAGAIN {
				putBuf(bp)
				bp = nil
				s.release(n)
				reserved = false
				return false
			}
			return true
		})
		release := func() {
			if reserved {
				reserved = false
				s.release(n)
			}
		}
		if noRoom {
			s.mu.Lock()
			for s.outHeld+n > muxOutBytes && s.outHeld > 0 && !st.over {
				s.outRoom.Wait()
			}
			s.mu.Unlock()
			continue
		}
		if err == nil {
			err = rerr
			if err == nil && got == 0 && bp != nil {
				err = io.EOF
			}
		}
		if got > 0 {
			s.mu.Lock()
			over := st.over
			st.credit -= int64(got)
			s.mu.Unlock()
			if over {
				putBuf(bp)
				release()
				return
			}
			putHead(*bp, muxData, st.id, uint32(got))
			werr := s.write((*bp)[:muxHeadBytes+got])
			putBuf(bp)
			release()
			if werr != nil {
				return
			}
			continue
		}
		release()
		if bp != nil {
			putBuf(bp)
		}
		if err == syscall.EINTR {
			continue
		}
		s.mu.Lock()
		if st.over {
			s.mu.Unlock()
			return
		}
		if err == io.EOF {
			st.portEnded = true
			st.endSent = true
			s.mu.Unlock()
			if s.write(muxFrame(muxEnd, st.id, nil)) != nil {
				return
			}
			s.mu.Lock()
			s.finishIfDoneLocked(st)
			s.mu.Unlock()
			return
		}
		s.resetLocked(st, codeClosed, fmt.Sprintf("port %d of sandbox %s: the connection was closed by the port's side", st.port, s.sandbox))
		s.mu.Unlock()
		return
	}
}

// release gives back n bytes of the connection's room for the ports' bytes (muxOutBytes).
func (s *muxSession) release(n int64) {
	s.mu.Lock()
	s.outHeld -= n
	s.outRoom.Broadcast()
	s.mu.Unlock()
}

// windowLocked: the window st may hold now, as tunnel-session.ts #window reckons it.
func (s *muxSession) windowLocked(st *muxStream) int64 {
	limits := s.budget.limits
	floor := min64(limits.minStreamWindow, muxWindow)
	streams := int64(len(s.streams))
	if streams < 1 {
		streams = 1
	}
	fair := limits.windowPerConnection / streams
	s.budget.mu.Lock()
	room := min64(limits.windowPerConnection-s.held, limits.window-s.budget.window) + st.held
	s.budget.mu.Unlock()
	w := min64(muxWindow, min64(fair, room))
	if w < floor {
		w = floor
	}
	return w
}

// grantLocked: the WINDOW increment to send for st now (0: none yet).
func (s *muxSession) grantLocked(st *muxStream) int64 {
	if st.over || st.clientEnded {
		return 0
	}
	window := s.windowLocked(st)
	increment := st.taken + window - st.allowed
	quarter := window / 4
	if quarter < 1 {
		quarter = 1
	}
	if increment < quarter {
		return 0
	}
	st.allowed += increment
	s.holdLocked(st, st.allowed-st.taken)
	return increment
}

func (s *muxSession) holdLocked(st *muxStream, held int64) {
	delta := held - st.held
	st.held = held
	s.held += delta
	s.budget.mu.Lock()
	s.budget.window += delta
	s.budget.mu.Unlock()
}

// finishIfDoneLocked: a stream is done once both sides have ended (END each way, the client's
// bytes all written and the port's side ended).
func (s *muxSession) finishIfDoneLocked(st *muxStream) {
	if st.endSent && st.wroteEnd {
		s.removeLocked(st)
		if st.conn != nil {
			st.conn.Close()
		}
	}
}

// resetLocked ends st from this side: RESET to the client, its dial given up, its connection
// reset.
func (s *muxSession) resetLocked(st *muxStream, code byte, reason string) {
	if st.over {
		return
	}
	s.removeLocked(st)
	if st.dialing != nil {
		st.dialing()
	}
	frame := muxClosing(muxReset, st.id, code, reason)
	if st.conn != nil {
		st.conn.SetLinger(0)
		st.conn.Close()
	}
	// (Written outside the lock: the writer may wait for a slow client.)
	if s.asyncWrites >= muxMaxAsyncWrites {
		if !s.dropping {
			s.dropping = true
			go s.goAway(codeLimit, "the client does not read what the server sends")
		}
		return
	}
	s.asyncWrites++
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.write(frame)
		s.mu.Lock()
		s.asyncWrites--
		s.mu.Unlock()
	}()
}

func (s *muxSession) removeLocked(st *muxStream) {
	if st.over {
		return
	}
	st.over = true
	delete(s.streams, st.id)
	s.holdLocked(st, 0)
	s.dropQueueLocked(st)
	st.cond.Broadcast()
	s.outRoom.Broadcast()
	if st.dialing == nil {
		s.releaseLocked(st)
	}
}

func (s *muxSession) dropQueueLocked(st *muxStream) {
	for _, c := range st.queue {
		if c.bp != nil {
			putBuf(c.bp)
		}
	}
	st.queue = nil
}

// releaseLocked gives back st's slot: it holds no descriptor, nor a dial, any more.
func (s *muxSession) releaseLocked(st *muxStream) {
	if st.released {
		return
	}
	st.released = true
	s.slots--
	s.budget.mu.Lock()
	s.budget.streams--
	s.budget.mu.Unlock()
	s.relay.giveMuxStream()
}

// goAway ends the connection with GOAWAY, and every stream on it at once; the client has a
// moment to read it before the connection goes.
func (s *muxSession) goAway(code byte, reason string) {
	if !s.endStreams() {
		return
	}
	frame := muxClosing(muxGoaway, 0, code, reason)
	go s.writeLast(frame)
	time.AfterFunc(muxCloseGrace, func() { s.conn.Close() })
}

// closed: the connection is gone; so are its streams' connections and dials.
func (s *muxSession) closed() {
	s.endStreams()
	s.conn.Close()
}

// endStreams ends the session's streams: their connections closed, their dials given up, no
// stream opened any more (false: it had ended already).
func (s *muxSession) endStreams() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	s.ended = true
	s.cancel()
	s.outRoom.Broadcast()
	for _, st := range s.streams {
		s.removeLocked(st)
		if st.conn != nil {
			st.conn.Close()
		}
	}
	return true
}

// write sends one frame whole (or ends the connection if it cannot): in slices, each of which
// must go within muxWriteStall, so a client that reads slowly but reads is kept.
func (s *muxSession) write(frame []byte) error {
	s.wmu.Lock()
	var err error
	for len(frame) > 0 && err == nil {
		slice := frame
		if len(slice) > muxWriteSlice {
			slice = slice[:muxWriteSlice]
		}
		// (The deadline moves on at most every tenth of the stall: each move is a timer's.)
		if now := time.Now(); now.Sub(s.deadlineSet) > s.stall/10 {
			s.deadlineSet = now
			s.conn.SetWriteDeadline(now.Add(s.stall))
		}
		var n int
		n, err = s.conn.Write(slice)
		frame = frame[n:]
	}
	s.wmu.Unlock()
	if err != nil {
		s.closed()
	}
	return err
}

// writeLast sends the connection's last frame, then lets the client's side end.
func (s *muxSession) writeLast(frame []byte) {
	s.wmu.Lock()
	s.conn.SetWriteDeadline(time.Now().Add(muxCloseGrace))
	if _, err := s.conn.Write(frame); err == nil {
		s.conn.CloseWrite()
	}
	s.wmu.Unlock()
}

func putHead(b []byte, typ int, id uint32, length uint32) {
	b[0] = byte(typ)
	binary.BigEndian.PutUint32(b[1:5], id)
	binary.BigEndian.PutUint32(b[5:9], length)
}

func muxFrame(typ int, id uint32, payload []byte) []byte {
	b := make([]byte, muxHeadBytes+len(payload))
	putHead(b, typ, id, uint32(len(payload)))
	copy(b[muxHeadBytes:], payload)
	return b
}

// muxClosing: a RESET or GOAWAY with its code and reason (cut to muxMaxReason bytes on a
// character's boundary).
func muxClosing(typ int, id uint32, code byte, reason string) []byte {
	text := []byte(reason)
	if len(text) > muxMaxReason {
		end := muxMaxReason
		for end > 0 && text[end]&0xc0 == 0x80 {
			end--
		}
		text = text[:end]
	}
	return muxFrame(typ, id, append([]byte{code}, text...))
}

func min64(a, b int64) int64 {
	if a < b {
		return a
	}
	return b
}
