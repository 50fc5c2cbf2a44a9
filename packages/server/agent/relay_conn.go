package main

// One connection through a tunnel of the relay (relay.go), and the connection the relay makes
// for it to the sandbox's port.
//
// Its first bytes say what it is (sniff, relay_http.go). An HTTP/1.x request is read request by
// request (relay_http.go: each head checked and written anew, each body by its framing), and the
// app's answers are passed on as they come, read only as far as where each ends. Anything else
// is piped both ways as it is. A client that says nothing within sniffWait (a protocol where the
// server speaks first, or a browser's connection made ahead of its first request) is connected
// to the app, whose bytes pass on to it, while its own first bytes are still read for what they
// are: an HTTP/1.x request takes the HTTP path if the app has said nothing yet, and ends the
// connection if it has; anything else is piped. Timing alone never lets a request through
// unread. Bodies are spliced (relay_splice.go). An upgrade is answered by the app before
// anything more of the client's reaches it; only if the app switched protocols (101) are both
// directions piped from then on, and any other answer is the connection's last.
//
// Idle connections end: one over which no byte has moved either way within silentIdle, a piped
// one (raw, or upgraded) after rawIdle without a byte either way; HTTP has its own (headTimeout,
// keepAliveIdle).

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	// sniffWait: how long a connection may stay silent before it is taken for a protocol where
	// the server speaks first (the tunnels' JavaScript path waits as long).
	sniffWait = 300 * time.Millisecond
	// headTimeout: how long a request head may take to arrive, from its first byte.
	headTimeout = 60 * time.Second
	// keepAliveIdle: how long an HTTP connection with nothing under way may wait for its next
	// request (Node's keepAliveTimeout, as on the JavaScript path).
	keepAliveIdle = 5 * time.Second
	// lingerTime: how long the relay reads (and drops) what a client still sends after the
	// connection's last answer, so that its unread bytes do not reset the answer away.
	lingerTime = time.Second
	// dialTimeout: how long a connection to the sandbox's port may take.
	dialTimeout = 10 * time.Second
	// silentIdle: how long a connection may stay with no byte either way (it holds a place under
	// the caps for nothing).
	silentIdle = 30 * time.Second
	// rawIdle: how long a piped connection (another protocol, or an upgraded one) may move no
	// byte either way (generous: an interactive session left open for a while stays).
	rawIdle = time.Hour
)

// maxPipelined: requests passed on to the app but not yet answered, at most.
const maxPipelined = 32

// exchange is a request passed on to the app (or refused by the relay), awaiting its answer.
type exchange struct {
	head    bool // a HEAD request: its answer has no body
	upgrade bool
	// switched says whether the app switched protocols (an upgrade's only).
	switched chan bool
	// refusal: no request went to the app; this is the answer, and the connection's last.
	refusal *httpError
}

type tunnelConn struct {
	tunnel *tunnel
	client *net.TCPConn
	// clientIP: where it comes from (its cap, relay.go).
	clientIP string

	mu       sync.Mutex
	upstream *net.TCPConn
	aborted  bool
	done     chan struct{} // closed when aborted

	// ending: the connection is ending with its last answer sent; the request side stops.
	ending int32
	// pending: requests sent to the app and not yet fully answered.
	pending int32

	toApp, toClient splicer

	// lastActive: when a byte last moved (unix ns), for the idle watch (c.mu guards the rest).
	lastActive int64
	idleLimit  time.Duration
	idleTimer  *time.Timer
	idleGen    int
}

func newTunnelConn(t *tunnel, client *net.TCPConn, clientIP string) *tunnelConn {
	c := &tunnelConn{tunnel: t, client: client, clientIP: clientIP, done: make(chan struct{})}
	c.toApp.active = &c.lastActive
	c.toClient.active = &c.lastActive
	return c
}

func (c *tunnelConn) touch() { atomic.StoreInt64(&c.lastActive, time.Now().UnixNano()) }

// watchIdle ends the connection once no byte has moved either way for d, from now (0: no
// watch; another call replaces it).
func (c *tunnelConn) watchIdle(d time.Duration) {
	c.touch()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idleTimer != nil {
		c.idleTimer.Stop()
		c.idleTimer = nil
	}
	c.idleLimit = d
	c.idleGen++
	if d > 0 && !c.aborted {
		c.armIdle(d)
	}
}

// armIdle (c.mu held) checks again in d.
func (c *tunnelConn) armIdle(d time.Duration) {
	gen := c.idleGen
	c.idleTimer = time.AfterFunc(d, func() { c.idleCheck(gen) })
}

func (c *tunnelConn) idleCheck(gen int) {
	c.mu.Lock()
	if gen != c.idleGen || c.aborted || c.idleLimit == 0 {
		c.mu.Unlock()
		return
	}
	idle := time.Duration(time.Now().UnixNano() - atomic.LoadInt64(&c.lastActive))
	if idle < c.idleLimit {
		c.armIdle(c.idleLimit - idle)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.abort()
}

// abort closes both connections now (what is under way fails).
func (c *tunnelConn) abort() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aborted {
		return
	}
	c.aborted = true
	close(c.done)
	if c.idleTimer != nil {
		c.idleTimer.Stop()
	}
	c.client.Close()
	if c.upstream != nil {
		c.upstream.Close()
	}
}

func (c *tunnelConn) isAborted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.aborted
}

// recoverAbort (deferred): a bug in the relay ends one connection, not the relay.
func (c *tunnelConn) recoverAbort() {
	if p := recover(); p != nil {
		relayLog("a connection of %s failed: %v\n%s", c.tunnel.name(), p, debug.Stack())
		c.abort()
	}
}

func (c *tunnelConn) serve() {
	defer c.tunnel.release(c)
	defer c.finish()
	defer c.recoverAbort()
	c.watchIdle(silentIdle)
	br := bufio.NewReaderSize(c.client, relayReadBuffer)
	verdict, err := c.sniff(br, sniffWait)
	if err == errSilent {
		c.serveSilent(br)
		return
	}
	if err != nil {
		c.abort()
		return
	}
	if verdict == sniffRaw {
		up, err := c.dial()
		if err != nil {
			c.abort()
			return
		}
		c.watchIdle(rawIdle)
		c.pipeBoth(br, up, nil)
		return
	}
	c.watchIdle(0)
	c.http(br)
}

// serveSilent serves a client that said nothing within sniffWait (see the file's comment): the
// app's bytes pass on to it; its first bytes decide.
func (c *tunnelConn) serveSilent(br *bufio.Reader) {
	up, err := c.dial()
	if err != nil {
		c.abort()
		return
	}
	const (
		undecided int32 = iota
		appSpoke        // (or ended its side): piped from then on
		takenForHTTP
	)
	state := undecided
	appDone := make(chan struct{})
	c.tunnel.wg.Add(1) // (a close waits for it too)
	go func() {
		defer c.tunnel.wg.Done()
		defer close(appDone)
		defer c.toClient.close()
		defer c.recoverAbort()
		ubr := bufio.NewReaderSize(up, relayReadBuffer)
		_, err := ubr.Peek(1)
		if !atomic.CompareAndSwapInt32(&state, undecided, appSpoke) {
			return // (taken for HTTP: this connection to the app is let go)
		}
		if err == nil {
			c.watchIdle(rawIdle)
		}
		c.pipe(c.client, ubr, up, &c.toClient)
	}()
	verdict, err := c.sniff(br, 0)
	switch {
	case err != nil:
		c.abort()
	case verdict == sniffHTTP && !atomic.CompareAndSwapInt32(&state, undecided, takenForHTTP):
		// The app spoke first: the request would reach it unread. The connection ends.
		c.abort()
	case verdict == sniffHTTP:
		up.Close()
		<-appDone
		c.mu.Lock()
		c.upstream = nil
		c.mu.Unlock()
		c.watchIdle(0)
		c.http(br)
		return
	default:
		c.watchIdle(rawIdle)
		c.pipe(up, br, c.client, &c.toApp)
	}
	<-appDone
}

// finish closes what is left: the sandbox's side at once, the client's after lingering.
func (c *tunnelConn) finish() {
	defer c.toApp.close() // (this goroutine's; toClient is the other one's)
	if c.isAborted() {
		return
	}
	c.mu.Lock()
	up := c.upstream
	c.mu.Unlock()
	if up != nil {
		up.Close()
	}
	c.client.CloseWrite()
	c.client.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, c.client, 256<<10)
	c.abort()
}

// errSilent: the client sent nothing within the sniff's wait.
var errSilent = errors.New("the client is silent")

// sniff waits for enough of the client's first bytes to tell HTTP/1.x from anything else: at
// most wait for the first (errSilent after it; 0: no limit), headTimeout for the rest. A client
// that ends its side before sending anything is piped (raw); with wait, it is silent.
func (c *tunnelConn) sniff(br *bufio.Reader, wait time.Duration) (sniffVerdict, error) {
	if wait > 0 {
		c.client.SetReadDeadline(time.Now().Add(wait))
	}
	extended := false
	for need := 1; ; {
		if _, err := br.Peek(need); err != nil {
			if br.Buffered() == 0 && wait > 0 && (isTimeout(err) || err == io.EOF) {
				c.client.SetReadDeadline(time.Time{})
				return 0, errSilent
			}
			if br.Buffered() == 0 && err == io.EOF {
				return sniffRaw, nil
			}
			if isTimeout(err) && !extended {
				extended = true // (the start of a request, slowly: it has headTimeout)
				c.client.SetReadDeadline(time.Now().Add(headTimeout))
				continue
			}
			return 0, err
		}
		if !extended {
			extended = true
			c.client.SetReadDeadline(time.Now().Add(headTimeout))
		}
		b, _ := br.Peek(br.Buffered())
		if verdict := sniff(b); verdict != sniffMore {
			c.client.SetReadDeadline(time.Time{})
			return verdict, nil
		}
		need = len(b) + 1
	}
}

// dial connects to the sandbox's port (refused once the tunnel is closing).
func (c *tunnelConn) dial() (*net.TCPConn, error) {
	d := net.Dialer{Timeout: dialTimeout}
	conn, err := d.DialContext(c.tunnel.ctx, "tcp", c.tunnel.target)
	if err != nil {
		return nil, err
	}
	up := conn.(*net.TCPConn)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aborted {
		up.Close()
		return nil, net.ErrClosed
	}
	c.upstream = up
	return up, nil
}

// pipeBoth pipes both directions as they are (each reader's buffered bytes first), each
// direction's end passed on as a half-close, until both have ended.
func (c *tunnelConn) pipeBoth(br *bufio.Reader, up *net.TCPConn, ubr *bufio.Reader) {
	var wg sync.WaitGroup
	wg.Add(1)
	c.tunnel.wg.Add(1) // (a close waits for it too)
	go func() {
		defer c.tunnel.wg.Done()
		defer wg.Done()
		defer c.toClient.close()
		defer c.recoverAbort()
		c.pipe(c.client, ubr, up, &c.toClient)
	}()
	c.pipe(up, br, c.client, &c.toApp)
	wg.Wait()
}

func (c *tunnelConn) pipe(dst *net.TCPConn, br *bufio.Reader, src *net.TCPConn, s *splicer) {
	if _, err := s.copyN(dst, br, src, -1); err != nil {
		c.abort()
		return
	}
	dst.CloseWrite()
}

// http serves an HTTP/1.x connection: requests in this goroutine, answers in another.
func (c *tunnelConn) http(br *bufio.Reader) {
	c.client.SetReadDeadline(time.Now().Add(headTimeout))
	first, err := c.readRequest(br)
	if err != nil {
		var refusal *httpError
		if errors.As(err, &refusal) {
			c.writeRefusal(refusal)
		} else {
			c.abort()
		}
		return
	}
	up, err := c.dial()
	if err != nil {
		if !c.isAborted() {
			c.writeRefusal(&httpError{502, c.tunnel.name() + " cannot be reached: " + dialProblem(err)})
		}
		return
	}
	ubr := bufio.NewReaderSize(up, relayReadBuffer)
	exchanges := make(chan *exchange, maxPipelined)
	answered := make(chan struct{})
	c.tunnel.wg.Add(1) // (a close waits for it too)
	go func() {
		defer c.tunnel.wg.Done()
		defer close(answered)
		defer c.toClient.close()
		defer c.recoverAbort()
		c.responses(up, ubr, exchanges)
	}()
	c.requests(br, up, first, exchanges)
	<-answered
}

func (c *tunnelConn) readRequest(br *bufio.Reader) (*requestHead, error) {
	lines, _, err := readHead(br, maxRequestHead, relayReadBuffer, errHeadTooLarge)
	if err != nil {
		return nil, err
	}
	return parseRequest(lines)
}

func (c *tunnelConn) isEnding() bool { return atomic.LoadInt32(&c.ending) != 0 }

// requests passes the client's requests on, each checked and written anew, until the client
// is done, a request is refused, an upgrade is answered, or the connection ends.
func (c *tunnelConn) requests(br *bufio.Reader, up *net.TCPConn, req *requestHead, exchanges chan<- *exchange) {
	defer close(exchanges)
	for {
		if req == nil {
			next, done := c.nextRequest(br, up, exchanges)
			if done {
				return
			}
			req = next
		}
		c.client.SetReadDeadline(time.Time{})
		if c.isEnding() {
			return
		}
		ex := &exchange{head: req.method == "HEAD", upgrade: req.upgrade}
		if req.upgrade {
			ex.switched = make(chan bool, 1)
		}
		atomic.AddInt32(&c.pending, 1)
		select {
		case exchanges <- ex:
		case <-c.done:
			return
		}
		if err := c.forward(br, up, req); err != nil {
			if !c.isEnding() {
				c.abort()
			}
			return
		}
		if req.upgrade {
			select {
			case switched := <-ex.switched:
				if switched {
					c.pipe(up, br, c.client, &c.toApp)
				}
			case <-c.done:
			}
			return
		}
		req = nil
	}
}

// nextRequest waits for and reads the client's next request: idle at most keepAliveIdle while
// no answer is under way. done: no more requests (the client ended its side, stayed idle, the
// connection is ending, or this one was refused: its refusal is queued).
func (c *tunnelConn) nextRequest(br *bufio.Reader, up *net.TCPConn, exchanges chan<- *exchange) (*requestHead, bool) {
	for {
		c.client.SetReadDeadline(time.Now().Add(keepAliveIdle))
		if c.isEnding() {
			return nil, true
		}
		_, err := br.Peek(1)
		if err == nil {
			break
		}
		if isTimeout(err) && !c.isEnding() && atomic.LoadInt32(&c.pending) > 0 {
			continue
		}
		if err == io.EOF {
			up.CloseWrite() // (the client is done; answers still come)
		} else if !isTimeout(err) {
			c.abort()
		}
		return nil, true
	}
	c.client.SetReadDeadline(time.Now().Add(headTimeout))
	req, err := c.readRequest(br)
	if err != nil {
		var refusal *httpError
		if !errors.As(err, &refusal) {
			if !c.isEnding() {
				c.abort()
			}
			return nil, true
		}
		select {
		case exchanges <- &exchange{refusal: refusal}:
			up.CloseWrite()
		case <-c.done:
		}
		return nil, true
	}
	return req, false
}

// forward writes a request to the app: its head anew, its body by its framing.
func (c *tunnelConn) forward(br *bufio.Reader, up *net.TCPConn, req *requestHead) error {
	head := req.encode()
	if req.chunked {
		return c.forwardChunked(br, up, head)
	}
	if req.length > 0 && req.length <= spliceWorthIt && int64(br.Buffered()) >= req.length {
		body, _ := br.Peek(int(req.length))
		_, err := up.Write(append(head, body...))
		br.Discard(int(req.length))
		return err
	}
	if _, err := up.Write(head); err != nil {
		return err
	}
	if req.length > 0 {
		_, err := c.toApp.copyN(up, br, c.client, req.length)
		return err
	}
	return nil
}

// forwardChunked writes a chunked body anew: each chunk's size in hex, its bytes, and the last
// chunk with no trailers (the client's are read and dropped).
func (c *tunnelConn) forwardChunked(br *bufio.Reader, up *net.TCPConn, head []byte) error {
	out := head
	flush := func() error {
		if len(out) == 0 {
			return nil
		}
		_, err := up.Write(out)
		out = out[:0]
		return err
	}
	for {
		if br.Buffered() == 0 {
			if err := flush(); err != nil {
				return err
			}
		}
		line, err := readLine(br, maxChunkLine)
		if err != nil {
			return err
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return errMalformed
		}
		if size == 0 {
			if err := skipTrailers(br); err != nil {
				return err
			}
			out = append(out, "0\r\n\r\n"...)
			return flush()
		}
		out = strconv.AppendInt(out, size, 16)
		out = append(out, "\r\n"...)
		if size <= spliceWorthIt && int64(br.Buffered()) >= size {
			data, _ := br.Peek(int(size))
			out = append(out, data...)
			br.Discard(int(size))
		} else {
			if err := flush(); err != nil {
				return err
			}
			if _, err := c.toApp.copyN(up, br, c.client, size); err != nil {
				return err
			}
		}
		if br.Buffered() < 2 {
			if err := flush(); err != nil {
				return err
			}
		}
		if end, err := readLine(br, 2); err != nil || len(end) != 0 {
			return errMalformed
		}
		out = append(out, "\r\n"...)
		if len(out) >= spliceWorthIt {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// skipTrailers reads a chunked body's trailer section (bounded) up to its empty line.
func skipTrailers(br *bufio.Reader) error {
	total := 0
	for {
		line, err := readLine(br, maxChunkLine)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		if total += len(line); total > maxTrailers {
			return errMalformed
		}
		if _, ok := parseField(line); !ok {
			return errMalformed
		}
	}
}

// responses passes the app's answers on, one per exchange in order, until there are no more
// exchanges, the app closes, or an upgrade is answered (switched: piped from then on).
func (c *tunnelConn) responses(up *net.TCPConn, ubr *bufio.Reader, exchanges <-chan *exchange) {
	for {
		ex := c.nextExchange(ubr, exchanges)
		if ex == nil {
			c.endGracefully()
			return
		}
		if ex.refusal != nil {
			c.writeAnswer(refusalAnswer(ex.refusal))
			c.endGracefully()
			return
		}
		last, err := c.answer(up, ubr, ex)
		if err != nil {
			if !c.isAborted() {
				c.abort()
			}
			return
		}
		if last {
			return
		}
		atomic.AddInt32(&c.pending, -1)
	}
}

// nextExchange waits for the next exchange whose answer the app has started to send. nil: the
// connection ends (no more exchanges, or the app closed or sent something nobody asked for).
func (c *tunnelConn) nextExchange(ubr *bufio.Reader, exchanges <-chan *exchange) *exchange {
	select {
	case ex, more := <-exchanges:
		if !more {
			return nil
		}
		return ex
	default:
	}
	// Nothing asked for yet: watch the app too (it may close while the client is idle).
	readable := make(chan error, 1)
	go func() {
		_, err := ubr.Peek(1)
		readable <- err
	}()
	select {
	case ex, more := <-exchanges:
		if !more || ex.refusal != nil {
			return ex
		}
		select {
		case err := <-readable:
			if err != nil {
				return nil
			}
			return ex
		case <-c.done:
			return nil
		}
	case err := <-readable:
		select {
		case ex, more := <-exchanges:
			if more && err == nil {
				return ex
			}
		default:
		}
		return nil
	case <-c.done:
		return nil
	}
}

// endGracefully ends the connection after its last answer: the request side stops reading,
// and finish lingers on the client's side.
func (c *tunnelConn) endGracefully() {
	atomic.StoreInt32(&c.ending, 1)
	c.client.SetReadDeadline(time.Now())
	c.mu.Lock()
	if c.upstream != nil {
		c.upstream.Close()
	}
	c.mu.Unlock()
}

// answer passes on the app's answer to ex (and any interim 1xx answers before it). last: the
// connection ends with it (an upgrade's answer, an answer ending when the app closes).
func (c *tunnelConn) answer(up *net.TCPConn, ubr *bufio.Reader, ex *exchange) (last bool, err error) {
	for {
		lines, raw, err := readHead(ubr, maxResponseHead, maxResponseLine, errMalformed)
		if err != nil {
			return true, err
		}
		resp, err := parseResponse(lines, ex.head)
		if err != nil {
			return true, err
		}
		if resp.status == 101 {
			if !ex.upgrade {
				return true, errMalformed
			}
			if err := c.writeAnswer(raw); err != nil {
				return true, err
			}
			c.watchIdle(rawIdle)
			ex.switched <- true
			c.pipe(c.client, ubr, up, &c.toClient)
			return true, nil
		}
		if resp.status < 200 {
			if err := c.writeAnswer(raw); err != nil {
				return true, err
			}
			continue
		}
		if err := c.answerBody(raw, up, ubr, resp.length); err != nil {
			return true, err
		}
		if ex.upgrade {
			ex.switched <- false
			c.endGracefully()
			return true, nil
		}
		if resp.length == bodyUntilClose {
			c.endGracefully()
			return true, nil
		}
		return false, nil
	}
}

func (c *tunnelConn) writeAnswer(b []byte) error {
	_, err := c.client.Write(b)
	return err
}

// answerBody passes on a head and the body after it.
func (c *tunnelConn) answerBody(head []byte, up *net.TCPConn, ubr *bufio.Reader, length int64) error {
	switch {
	case length == 0:
		return c.writeAnswer(head)
	case length > 0 && length <= spliceWorthIt && int64(ubr.Buffered()) >= length:
		body, _ := ubr.Peek(int(length))
		err := c.writeAnswer(append(head, body...))
		ubr.Discard(int(length))
		return err
	case length == bodyChunked:
		return c.answerChunked(head, up, ubr)
	}
	if err := c.writeAnswer(head); err != nil {
		return err
	}
	_, err := c.toClient.copyN(c.client, ubr, up, length)
	return err
}

// answerChunked passes a chunked body on as it is, read only to find its end.
func (c *tunnelConn) answerChunked(head []byte, up *net.TCPConn, ubr *bufio.Reader) error {
	out := head
	flush := func() error {
		if len(out) == 0 {
			return nil
		}
		err := c.writeAnswer(out)
		out = out[:0]
		return err
	}
	for {
		if ubr.Buffered() == 0 {
			if err := flush(); err != nil {
				return err
			}
		}
		line, err := readLine(ubr, maxChunkLine)
		if err != nil {
			return err
		}
		size, ok := parseChunkSize(line)
		if !ok {
			return errMalformed
		}
		out = append(append(out, line...), "\r\n"...)
		if size == 0 {
			total := 0
			for {
				if ubr.Buffered() == 0 {
					if err := flush(); err != nil {
						return err
					}
				}
				trailer, err := readLine(ubr, maxChunkLine)
				if err != nil {
					return err
				}
				out = append(append(out, trailer...), "\r\n"...)
				if len(trailer) == 0 {
					return flush()
				}
				if total += len(trailer); total > maxTrailers {
					return errMalformed
				}
			}
		}
		if size <= spliceWorthIt && int64(ubr.Buffered()) >= size {
			data, _ := ubr.Peek(int(size))
			out = append(out, data...)
			ubr.Discard(int(size))
		} else {
			if err := flush(); err != nil {
				return err
			}
			if _, err := c.toClient.copyN(c.client, ubr, up, size); err != nil {
				return err
			}
		}
		if ubr.Buffered() < 2 {
			if err := flush(); err != nil {
				return err
			}
		}
		if end, err := readLine(ubr, 2); err != nil || len(end) != 0 {
			return errMalformed
		}
		out = append(out, "\r\n"...)
		if len(out) >= spliceWorthIt {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// writeRefusal answers the client itself (no request of this connection reached the app, or all
// that did are answered) and ends the connection.
func (c *tunnelConn) writeRefusal(refusal *httpError) {
	c.writeAnswer(refusalAnswer(refusal))
}

var statusText = map[int]string{
	400: "Bad Request",
	431: "Request Header Fields Too Large",
	502: "Bad Gateway",
	505: "HTTP Version Not Supported",
}

func refusalAnswer(refusal *httpError) []byte {
	text := statusText[refusal.status]
	body := fmt.Sprintf("%d %s: %s\n", refusal.status, text, refusal.reason)
	return []byte(fmt.Sprintf(
		"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s",
		refusal.status, text, len(body), body))
}

// dialProblem says why the sandbox's port could not be reached (as the server's dialer says it).
func dialProblem(err error) string {
	var errno syscall.Errno
	switch {
	case errors.As(err, &errno) && errno == syscall.ECONNREFUSED:
		return "nothing listens there"
	case isTimeout(err):
		return fmt.Sprintf("no answer within %s", dialTimeout)
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Err.Error()
	}
	return err.Error()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded)
}
