package main

// HTTP/1.x heads as the tunnel relay (relay.go) reads them. Every byte comes from the network or
// from a sandbox: hostile until checked, and bounded.
//
// Requests are parsed strictly and written to the app anew (requestHead.encode): the request
// line and each field as parsed, the framing fields in one canonical form, sbx's token cookies,
// any caller's X-Verified-User-Data and the sbx_token query parameter taken out, exactly as
// server-kit's gateway-auth.ts does for a tunnel. Anything whose framing could be read two ways
// (Transfer-Encoding other than chunked, with Content-Length, in HTTP/1.0; more than one
// Content-Length or Host; obs-fold; bare CR) is refused with a 400, so the app sees exactly the
// requests the relay saw: none can be smuggled past it. A chunked body is written anew too
// (sizes in hex, no extensions, no trailers).
//
// Responses are the app's to its own client: they are passed on as they come, and read only to
// know where each ends (RFC 9112 §6.3), which is how the relay knows whether the app switched
// protocols on an upgrade.

import (
	"bufio"
	"bytes"
	"errors"
	"strconv"
	"strings"
)

const (
	// maxRequestHead is the most a request head may take (Node's default, which the tunnels'
	// HTTP path had before): more is a 431.
	maxRequestHead = 16 << 10
	// maxResponseHead is the most a response head may take (an app's big Content-Security-Policy
	// or Set-Cookie lines among it), and maxResponseLine the most one of its lines may.
	maxResponseHead = 256 << 10
	maxResponseLine = 64 << 10
	// maxHeadFields is the most fields a head may have.
	maxHeadFields = 256
	// maxChunkLine is the most a chunk-size line (with its extensions) may take.
	maxChunkLine = 4 << 10
	// maxTrailers is the most a chunked body's trailer section may take.
	maxTrailers = 16 << 10
	// relayReadBuffer is each direction's read buffer: the longest line of a request head.
	relayReadBuffer = 16 << 10
)

// httpError is a request the relay refuses: its status and why.
type httpError struct {
	status int
	reason string
}

func (e *httpError) Error() string { return strconv.Itoa(e.status) + " " + e.reason }

func badRequest(reason string) error { return &httpError{400, reason} }

var errHeadTooLarge = &httpError{431, "the request head is too large"}

// errMalformed: a response (or chunked framing) the relay cannot follow; the connection ends.
var errMalformed = errors.New("malformed HTTP framing")

// headLine is one line of a head, without its line end.
type headLine []byte

// readHead reads a head's lines up to the empty line that ends it (CRLF or LF line ends; empty
// lines before it are skipped), at most limit bytes in all and lineLimit a line (a line longer
// than br's buffer is gathered). tooLarge is returned past either; io.EOF when the stream ended
// before any byte of a head; raw holds the head's bytes as read.
func readHead(br *bufio.Reader, limit, lineLimit int, tooLarge error) (lines []headLine, raw []byte, err error) {
	total := 0
	var long []byte // a line longer than br's buffer, so far
	for {
		line, err := br.ReadSlice('\n')
		total += len(line)
		if total > limit || len(long)+len(line) > lineLimit {
			return nil, nil, tooLarge
		}
		if err == bufio.ErrBufferFull {
			long = append(long, line...)
			continue
		}
		if long != nil {
			line = append(long, line...)
			long = nil
		}
		if err != nil {
			if total == 0 {
				return nil, nil, err
			}
			return nil, nil, errUnexpectedEOF(err)
		}
		raw = append(raw, line...)
		l := line[:len(line)-1]
		if len(l) > 0 && l[len(l)-1] == '\r' {
			l = l[:len(l)-1]
		}
		if bytes.IndexByte(l, '\r') >= 0 || bytes.IndexByte(l, 0) >= 0 {
			return nil, nil, badRequest("a bare CR or NUL in the head")
		}
		if len(l) == 0 {
			if len(lines) == 0 {
				raw = raw[:0]
				continue
			}
			return lines, raw, nil
		}
		if len(lines) > maxHeadFields {
			return nil, nil, tooLarge
		}
		lines = append(lines, append(headLine(nil), l...))
	}
}

// errUnexpectedEOF: the stream ended (or failed) inside a head or body.
func errUnexpectedEOF(err error) error {
	if err == nil || err.Error() == "EOF" {
		return errors.New("unexpected EOF")
	}
	return err
}

// field is a head's field: its name as sent, its value without surrounding whitespace.
type field struct{ name, value string }

// parseField parses a field line strictly: a token, a colon, the value (no obs-fold, no CTLs).
func parseField(l headLine) (field, bool) {
	colon := bytes.IndexByte(l, ':')
	if colon <= 0 {
		return field{}, false
	}
	for _, c := range l[:colon] {
		if !isTchar(c) {
			return field{}, false
		}
	}
	value := trimOWS(l[colon+1:])
	for _, c := range value {
		if c != '\t' && (c < 0x20 || c == 0x7f) {
			return field{}, false
		}
	}
	return field{string(l[:colon]), string(value)}, true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// isTchar: a character of a token (RFC 9110 §5.6.2).
func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// requestHead is a request as it goes on to the app.
type requestHead struct {
	method, target, version string
	fields                  []field
	// length of the body (-1: chunked; 0: none).
	length  int64
	chunked bool
	// upgrade: the request asks to switch protocols (it has an Upgrade field): nothing more of the
	// client's goes to the app until the app has answered it, and then only if it switched.
	upgrade bool
}

// underscoreRefused: the fields that frame a request or its connection, refused (400) when their
// name is spelt with '_' for '-' (Transfer_Encoding, Content_Length, Keep_Alive): CGI-style
// servers (Puma, Unicorn, anything on Rack or WSGI's environ) read such a name as the field
// itself, so a request the relay framed one way would reach the app framed another
// (smuggling). Other names with '_' pass as they are (X_Verified_User_Data is taken out; Host,
// Connection and Upgrade have no '-' to spell so). gateway-auth.ts refuses the same names.
var underscoreRefused = map[string]bool{"content-length": true, "transfer-encoding": true, "keep-alive": true}

// verifiedUserData is the header only a connect token's metadata may set (never a caller).
const verifiedUserData = "x-verified-user-data"

// parseRequest checks a request head and makes it what the app gets (see the file's comment).
func parseRequest(lines []headLine) (*requestHead, error) {
	parts := strings.Split(string(lines[0]), " ")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return nil, badRequest("a malformed request line")
	}
	r := &requestHead{method: parts[0], target: parts[1], version: parts[2]}
	for i := 0; i < len(r.method); i++ {
		if !isTchar(r.method[i]) {
			return nil, badRequest("a malformed method")
		}
	}
	if r.version != "HTTP/1.1" && r.version != "HTTP/1.0" {
		return nil, &httpError{505, "only HTTP/1.0 and HTTP/1.1 are read here"}
	}
	if r.method == "CONNECT" {
		return nil, badRequest("CONNECT is not passed on within an HTTP connection")
	}
	for i := 0; i < len(r.target); i++ {
		if c := r.target[i]; c <= 0x20 || c == 0x7f || c == '#' {
			return nil, badRequest("a malformed request target")
		}
	}
	// A path, "*", or an absolute URI of http(s) (RFC 9112 §3.2; authority-form is CONNECT's).
	if lower := strings.ToLower(r.target); r.target[0] != '/' && r.target != "*" &&
		!strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "https://") {
		return nil, badRequest("a malformed request target")
	}
	r.target = withoutTokenParam(r.target)
	var cookies []string
	cookieAt := -1
	haveLength, haveHost := false, false
	for _, l := range lines[1:] {
		f, ok := parseField(l)
		if !ok {
			return nil, badRequest("a malformed header field")
		}
		name := strings.ToLower(f.name)
		if strings.IndexByte(name, '_') >= 0 && underscoreRefused[strings.ReplaceAll(name, "_", "-")] {
			return nil, badRequest("a header field name spelt with '_' for " + strings.ReplaceAll(name, "_", "-"))
		}
		switch {
		case strings.ReplaceAll(name, "_", "-") == verifiedUserData:
			continue // (with underscores too: CGI-style servers read both as one)
		case name == "cookie":
			if cookieAt < 0 {
				cookieAt = len(r.fields)
				r.fields = append(r.fields, f)
			}
			cookies = append(cookies, f.value)
			continue
		case name == "content-length":
			if haveLength {
				return nil, badRequest("more than one Content-Length")
			}
			haveLength = true
			n, ok := parseLength(f.value)
			if !ok {
				return nil, badRequest("a malformed Content-Length")
			}
			r.length = n
			f.value = strconv.FormatInt(n, 10)
		case name == "transfer-encoding":
			if r.chunked {
				return nil, badRequest("more than one Transfer-Encoding")
			}
			if !strings.EqualFold(f.value, "chunked") {
				return nil, badRequest("a transfer coding other than chunked")
			}
			r.chunked = true
			f.value = "chunked"
		case name == "host":
			if haveHost {
				return nil, badRequest("more than one Host")
			}
			haveHost = true
		case name == "upgrade":
			r.upgrade = true
		}
		r.fields = append(r.fields, f)
	}
	if r.chunked && haveLength {
		return nil, badRequest("both Transfer-Encoding and Content-Length")
	}
	if r.chunked && r.version == "HTTP/1.0" {
		return nil, badRequest("Transfer-Encoding in an HTTP/1.0 request")
	}
	if r.chunked {
		r.length = -1
	}
	if cookieAt >= 0 {
		if kept := withoutTokenCookies(cookies); kept != "" {
			r.fields[cookieAt].value = kept
		} else {
			r.fields = append(r.fields[:cookieAt], r.fields[cookieAt+1:]...)
		}
	}
	return r, nil
}

// encode is the head the app gets.
func (r *requestHead) encode() []byte {
	n := len(r.method) + len(r.target) + len(r.version) + 8
	for _, f := range r.fields {
		n += len(f.name) + len(f.value) + 4
	}
	b := make([]byte, 0, n)
	b = append(b, r.method...)
	b = append(b, ' ')
	b = append(b, r.target...)
	b = append(b, ' ')
	b = append(b, r.version...)
	b = append(b, "\r\n"...)
	for _, f := range r.fields {
		b = append(b, f.name...)
		b = append(b, ": "...)
		b = append(b, f.value...)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

// parseLength: 1*DIGIT, at most 18 of them.
func parseLength(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int64(s[i]-'0')
	}
	return n, true
}

// tokenParam is the query parameter a token may come in (gateway-auth.ts's TOKEN_PARAM).
const tokenParam = "sbx_token"

// withoutTokenParam takes every sbx_token parameter out of a request target's query (its name
// read as URLSearchParams reads it: '+' a space, %XX decoded); the rest is left as sent.
func withoutTokenParam(target string) string {
	q := strings.IndexByte(target, '?')
	if q < 0 {
		return target
	}
	parts := strings.Split(target[q+1:], "&")
	kept := parts[:0]
	for _, part := range parts {
		name := part
		if eq := strings.IndexByte(part, '='); eq >= 0 {
			name = part[:eq]
		}
		if formDecode(name) != tokenParam {
			kept = append(kept, part)
		}
	}
	if len(kept) == len(parts) {
		return target
	}
	if len(kept) == 0 {
		return target[:q]
	}
	return target[:q+1] + strings.Join(kept, "&")
}

// formDecode decodes application/x-www-form-urlencoded bytes ('+' a space, %XX a byte; a '%'
// not followed by two hex digits stays as it is).
func formDecode(s string) string {
	if strings.IndexByte(s, '+') < 0 && strings.IndexByte(s, '%') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b = append(b, ' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// withoutTokenCookies is gateway-auth.ts's cookie rule: the Cookie fields' pairs (split at ';',
// a name before a '=', both trimmed as JavaScript trims), every sbx token cookie (sbx_<sandbox>_<port>)
// taken out, the rest joined with "; " ("" when none is left).
func withoutTokenCookies(values []string) string {
	var kept []string
	for _, value := range values {
		for _, part := range strings.Split(value, ";") {
			eq := strings.IndexByte(part, '=')
			if eq <= 0 {
				continue
			}
			name := jsTrim(part[:eq])
			if isTokenCookie(name) {
				continue
			}
			kept = append(kept, name+"="+jsTrim(part[eq+1:]))
		}
	}
	return strings.Join(kept, "; ")
}

// jsTrim trims what String.prototype.trim trims of a Latin-1 string (a field's bytes as Node
// reads them): byte by byte (strings.Trim would read the bytes as UTF-8).
func jsTrim(s string) string {
	isSpace := func(c byte) bool { return c == ' ' || (c >= '\t' && c <= '\r') || c == 0xa0 }
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// isTokenCookie: the name matches /^sbx_.+_\d+$/ (gateway-auth.ts's TOKEN_COOKIE).
func isTokenCookie(name string) bool {
	if !strings.HasPrefix(name, "sbx_") {
		return false
	}
	last := strings.LastIndexByte(name, '_')
	if last <= len("sbx_") || last == len(name)-1 {
		return false
	}
	for i := last + 1; i < len(name); i++ {
		if name[i] < '0' || name[i] > '9' {
			return false
		}
	}
	return true
}

// responseHead is what the relay reads of a response: its status and where its body ends.
type responseHead struct {
	status int
	// length of the body: -1 chunked, -2 until the app closes, else that many bytes.
	length int64
}

const (
	bodyChunked    = -1
	bodyUntilClose = -2
)

// parseResponse reads a response head's status and framing (RFC 9112 §6.3); head: the request
// was a HEAD.
func parseResponse(lines []headLine, head bool) (*responseHead, error) {
	status := lines[0]
	if len(status) < 12 || !bytes.HasPrefix(status, []byte("HTTP/1.")) || (status[7] != '0' && status[7] != '1') ||
		status[8] != ' ' || (len(status) > 12 && status[12] != ' ') {
		return nil, errMalformed
	}
	code := 0
	for _, c := range status[9:12] {
		if c < '0' || c > '9' {
			return nil, errMalformed
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return nil, errMalformed
	}
	r := &responseHead{status: code, length: bodyUntilClose}
	length := int64(-1)
	var codings []string
	for _, l := range lines[1:] {
		f, ok := parseField(l)
		if !ok {
			return nil, errMalformed
		}
		switch strings.ToLower(f.name) {
		case "content-length":
			n, ok := parseLength(f.value)
			if !ok || (length >= 0 && n != length) {
				return nil, errMalformed
			}
			length = n
		case "transfer-encoding":
			for _, c := range strings.Split(f.value, ",") {
				if c = strings.TrimSpace(c); c != "" {
					codings = append(codings, strings.ToLower(c))
				}
			}
		}
	}
	switch {
	case head || code < 200 || code == 204 || code == 304:
		r.length = 0
	case len(codings) > 0:
		if codings[len(codings)-1] == "chunked" {
			r.length = bodyChunked
		}
	case length >= 0:
		r.length = length
	}
	return r, nil
}

// parseChunkSize reads a chunk-size line: 1 to 15 hex digits, then nothing, or extensions after
// optional whitespace and a ';' (no CTLs but HTAB).
func parseChunkSize(l headLine) (int64, bool) {
	i := 0
	var n int64
	for i < len(l) && isHex(l[i]) {
		if i == 15 {
			return 0, false
		}
		n = n<<4 | int64(unhex(l[i]))
		i++
	}
	if i == 0 {
		return 0, false
	}
	rest := trimOWS(l[i:])
	if len(rest) > 0 && rest[0] != ';' {
		return 0, false
	}
	for _, c := range rest {
		if c != '\t' && (c < 0x20 || c == 0x7f) {
			return 0, false
		}
	}
	return n, true
}

// readLine reads one line of at most limit bytes, without its CRLF or LF (a bare CR or NUL in it:
// errMalformed).
func readLine(br *bufio.Reader, limit int) (headLine, error) {
	line, err := br.ReadSlice('\n')
	if len(line) > limit || err == bufio.ErrBufferFull {
		return nil, errMalformed
	}
	if err != nil {
		return nil, errUnexpectedEOF(err)
	}
	l := line[:len(line)-1]
	if len(l) > 0 && l[len(l)-1] == '\r' {
		l = l[:len(l)-1]
	}
	if bytes.IndexByte(l, '\r') >= 0 || bytes.IndexByte(l, 0) >= 0 {
		return nil, errMalformed
	}
	return l, nil
}

// sniffVerdict is what a connection's first bytes say it is.
type sniffVerdict int

const (
	sniffMore sniffVerdict = iota // not yet known: more bytes tell
	sniffHTTP                     // an HTTP/1.x request
	sniffRaw                      // anything else: piped as it is
)

// http2Preface starts an HTTP/2 connection with prior knowledge: piped as it is.
const http2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// maxSniffMethod: the longest method a connection's start is read as.
const maxSniffMethod = 32

// sniff tells an HTTP/1.x request from anything else by its start, whatever the bytes come
// split into: empty lines, a method (a token, in any case: lenient servers take it), a space,
// and a request target that is a path, "*" or an http(s) URI. Whatever any server could read
// as a request is read as one here (and refused if it is not a good one), so that no request
// reaches the app unchecked. HTTP/2's preface is not HTTP/1.x.
func sniff(b []byte) sniffVerdict {
	if n := len(b); n <= len(http2Preface) && string(b) == http2Preface[:n] {
		if n == len(http2Preface) {
			return sniffRaw
		}
		return sniffMore
	} else if n > len(http2Preface) && string(b[:len(http2Preface)]) == http2Preface {
		return sniffRaw
	}
	for len(b) > 0 && (b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	i := 0
	for i < len(b) && i <= maxSniffMethod && isTchar(b[i]) {
		i++
	}
	if i == len(b) && i <= maxSniffMethod {
		return sniffMore
	}
	if i == 0 || i > maxSniffMethod || b[i] != ' ' {
		return sniffRaw
	}
	rest := strings.ToLower(string(b[i+1:]))
	if rest == "" {
		return sniffMore
	}
	if rest[0] == '/' || rest[0] == '*' {
		return sniffHTTP
	}
	for _, scheme := range []string{"http://", "https://"} {
		if strings.HasPrefix(rest, scheme) {
			return sniffHTTP
		}
		if strings.HasPrefix(scheme, rest) {
			return sniffMore
		}
	}
	return sniffRaw
}
