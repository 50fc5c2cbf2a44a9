package main

import (
	"bufio"
	"errors"
	"strings"
	"testing"
)

func parseRequestText(t *testing.T, text string) (*requestHead, error) {
	t.Helper()
	lines, _, err := readHead(bufio.NewReaderSize(strings.NewReader(text), relayReadBuffer), maxRequestHead, relayReadBuffer, errHeadTooLarge)
	if err != nil {
		return nil, err
	}
	return parseRequest(lines)
}

func TestRequestsReachTheAppWithoutSbxCredentials(t *testing.T) {
	req, err := parseRequestText(t, "GET /a?x=1&sbx_token=T&sbx%5Ftoken=U&y=2 HTTP/1.1\r\n"+
		"Host: h\r\nCookie: sbx_sb-9_80=t; a=b\r\nX-Verified-User-Data: forged\r\nx_verified_user_data: forged\r\n"+
		"Authorization: Bearer the-apps-own\r\ncookie:  c=d ;sbx_other_8080=stolen\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "GET /a?x=1&y=2 HTTP/1.1\r\nHost: h\r\nCookie: a=b; c=d\r\nAuthorization: Bearer the-apps-own\r\n\r\n"
	if got := string(req.encode()); got != want {
		t.Errorf("the app gets %q, want %q", got, want)
	}
	only, _ := parseRequestText(t, "GET /?sbx_token=T HTTP/1.0\nCookie: sbx_a_1=x\n\n")
	if got := string(only.encode()); got != "GET / HTTP/1.0\r\n\r\n" {
		t.Errorf("the app gets %q", got)
	}
}

func TestCookiesAreFilteredAsTheGatewayFiltersThem(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"a=b; sbx_x_1=t", "a=b"},
		{"sbx_x_1=t", ""},
		{"sbx__1=kept; sbx_x_=kept; sbx_x_1a=kept; SBX_x_1=kept", "sbx__1=kept; sbx_x_=kept; sbx_x_1a=kept; SBX_x_1=kept"},
		{"sbx_a_b_12=t;noequals; =v; x = y ", "=v; x=y"},
		{"\xa0sbx_q_7\xa0=t; a=\"q;r\"", "a=\"q"},
		{"\xffsbx_q_7=t; \xff=\xff", "\xffsbx_q_7=t; \xff=\xff"},
	} {
		if got := withoutTokenCookies([]string{c.in}); got != c.want {
			t.Errorf("withoutTokenCookies(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestAmbiguousFramingIsRefused(t *testing.T) {
	for _, text := range []string{
		"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: \x0bchunked\r\n\r\n",
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
		"GET /\x7f HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1 \r\n\r\n",
		"GET  / HTTP/1.1\r\n\r\n",
		"GET /#f HTTP/1.1\r\n\r\n",
		"CONNECT / HTTP/1.1\r\n\r\n",
		"G(T / HTTP/1.1\r\n\r\n",
		"GET / HTTP/2.0\r\n\r\n",
		"GET / HTTP/1.1\r\nX-\x00: a\r\n\r\n",
	} {
		_, err := parseRequestText(t, text)
		var refusal *httpError
		if !errors.As(err, &refusal) || refusal.status < 400 {
			t.Errorf("%q: %v, want a refusal", text, err)
		}
	}
	if _, err := parseRequestText(t, "GET / HTTP/1.1\r\nX: "+strings.Repeat("a", maxRequestHead)+"\r\n\r\n"); err != errHeadTooLarge {
		t.Errorf("a huge head: %v", err)
	}
	if _, err := parseRequestText(t, "GET / HTTP/1.1\r\n"+strings.Repeat("X: a\r\n", maxHeadFields+2)+"\r\n"); err != errHeadTooLarge {
		t.Errorf("too many fields: %v", err)
	}
}

func TestFramingIsWrittenInOneForm(t *testing.T) {
	req, err := parseRequestText(t, "\r\nPOST /u HTTP/1.1\r\ncontent-length: 007\r\nUpgrade: websocket\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if req.length != 7 || req.chunked || !req.upgrade {
		t.Errorf("framing %+v", req)
	}
	if got := string(req.encode()); got != "POST /u HTTP/1.1\r\ncontent-length: 7\r\nUpgrade: websocket\r\n\r\n" {
		t.Errorf("head %q", got)
	}
	req, _ = parseRequestText(t, "POST /u HTTP/1.1\r\nTransfer-Encoding: CHUNKED\r\n\r\n")
	if req.length != -1 || !req.chunked || string(req.encode()) != "POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" {
		t.Errorf("chunked %+v %q", req, req.encode())
	}
}

func TestResponsesEndWhereRFC9112SaysTheyEnd(t *testing.T) {
	for _, c := range []struct {
		text string
		head bool
		want int64
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", false, 12},
		{"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n", true, 0},
		{"HTTP/1.1 204 No Content\r\n\r\n", false, 0},
		{"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", false, 0},
		{"HTTP/1.1 100 Continue\r\n\r\n", false, 0},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n", false, bodyChunked},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", false, bodyUntilClose},
		{"HTTP/1.0 200 OK\r\n\r\n", false, bodyUntilClose},
		{"HTTP/1.1 200\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", false, 3},
	} {
		lines, _, err := readHead(bufio.NewReader(strings.NewReader(c.text)), maxResponseHead, maxResponseLine, errMalformed)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := parseResponse(lines, c.head)
		if err != nil || resp.length != c.want {
			t.Errorf("%q (HEAD %v): %+v %v, want length %d", c.text, c.head, resp, err, c.want)
		}
	}
	for _, text := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
		"HTTP/2 200\r\n\r\n",
		"HTTP/1.1 20x OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\n folded\r\n\r\n",
	} {
		lines, _, _ := readHead(bufio.NewReader(strings.NewReader(text)), maxResponseHead, maxResponseLine, errMalformed)
		if _, err := parseResponse(lines, false); err == nil {
			t.Errorf("%q was taken", text)
		}
	}
}

func TestChunkSizes(t *testing.T) {
	for _, c := range []struct {
		line string
		n    int64
		ok   bool
	}{
		{"1a", 26, true}, {"0", 0, true}, {"10;ext=1", 16, true}, {"10 ; ext", 16, true},
		{"", 0, false}, {"x", 0, false}, {"-1", 0, false}, {"1 2", 0, false}, {"0x10", 0, false},
		{"1000000000000000", 0, false}, {"10;\x01", 0, false},
	} {
		n, ok := parseChunkSize(headLine(c.line))
		if ok != c.ok || (ok && n != c.n) {
			t.Errorf("parseChunkSize(%q) = %d %v", c.line, n, ok)
		}
	}
}

func TestSniffTellsHTTPFromTheRest(t *testing.T) {
	for _, c := range []struct {
		start string
		want  sniffVerdict
	}{
		{"GET / HTTP/1.1", sniffHTTP}, {"OPTIONS * HTTP/1.1", sniffHTTP}, {"GET http://x/ HTTP/1.1", sniffHTTP},
		{"PROPPATCH https://x/", sniffHTTP}, {"G", sniffMore}, {"GE", sniffMore}, {"GET ", sniffMore}, {"GET htt", sniffMore},
		// (What a lenient server would take for a request is one: lower case, empty lines first.)
		{"ABCDEFGHIJK /", sniffHTTP}, {"GE /", sniffHTTP}, {"get / HTTP/1.1", sniffHTTP}, {"\r\n\r\nGET /", sniffHTTP},
		{"\r\n", sniffMore}, {"M-SEARCH * HTTP/1.1", sniffHTTP}, {"GET HTTPS://x/", sniffHTTP},
		{strings.Repeat("A", 33) + " /", sniffRaw}, {"GET x", sniffRaw}, {"GET ftp://", sniffRaw},
		{"OPTIONS rtsp://x/ RTSP/1.0", sniffRaw}, {"\x16\x03\x01", sniffRaw}, {"SSH-2.0-OpenSSH_9.2\r\n", sniffRaw}, {"get key\r\n", sniffRaw},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", sniffRaw}, {"PRI * HTTP/2.0\r\n", sniffMore}, {"PRI * HTTP/1.1\r\n", sniffHTTP},
	} {
		if got := sniff([]byte(c.start)); got != c.want {
			t.Errorf("sniff(%q) = %d, want %d", c.start, got, c.want)
		}
	}
}

// Whatever a request head is, what the app gets of it reads back as the same request, with no
// sbx token cookie, no verified-user header and no sbx_token parameter in it.
func FuzzRequestHeadsReachTheAppClean(f *testing.F) {
	for _, seed := range []string{
		"GET /a?sbx_token=1&b HTTP/1.1\r\nCookie: sbx_a_1=t; b=c\r\nX-Verified-User-Data: x\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: h\r\n\r\n",
		"PUT /x HTTP/1.0\nContent-Length: 10\nCookie: a=b;sbx_q_2=1\n\n",
		"GET / HTTP/1.1\r\nCookie: =sbx_a_1\r\nCookie: sbx_a_1 =x\r\n\r\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		req, err := parseRequestText(t, text)
		if err != nil {
			return
		}
		out := req.encode()
		again, err := parseRequestText(t, string(out))
		if err != nil {
			t.Fatalf("%q became %q, which does not parse: %v", text, out, err)
		}
		// (Cookie pairs with a blank name, " =v", become "=v" and then go, as with the gateway.)
		withoutCookies := func(b []byte) string {
			var kept []string
			for _, line := range strings.Split(string(b), "\r\n") {
				if !strings.HasPrefix(strings.ToLower(line), "cookie:") {
					kept = append(kept, line)
				}
			}
			return strings.Join(kept, "\r\n")
		}
		if withoutCookies(again.encode()) != withoutCookies(out) || again.length != req.length || again.chunked != req.chunked || again.upgrade != req.upgrade {
			t.Fatalf("%q became %q, which reads differently", text, out)
		}
		for _, f := range again.fields {
			name := strings.ToLower(f.name)
			if strings.ReplaceAll(name, "_", "-") == verifiedUserData {
				t.Fatalf("%q: the verified-user header reached the app", text)
			}
			if name == "cookie" {
				for _, part := range strings.Split(f.value, ";") {
					if eq := strings.IndexByte(part, '='); eq > 0 && isTokenCookie(jsTrim(part[:eq])) {
						t.Fatalf("%q: a token cookie reached the app: %q", text, f.value)
					}
				}
			}
		}
		if q := strings.IndexByte(again.target, '?'); q >= 0 {
			for _, part := range strings.Split(again.target[q+1:], "&") {
				if eq := strings.IndexByte(part, '='); formDecode(part) == tokenParam || (eq >= 0 && formDecode(part[:eq]) == tokenParam) {
					t.Fatalf("%q: the token parameter reached the app", text)
				}
			}
		}
	})
}
