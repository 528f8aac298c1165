package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/httpserve"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/signing"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// guard bounds a raw connection's reads and writes, so that a server that
// waits for a body it was never sent fails the test instead of hanging it.
// It is not a measure of speed: the server under test has a read timeout
// far longer than it.
const guard = 30 * time.Second

// withLongReads lets a request's body take as long as it likes, so that
// only the server's own checks answer a request whose body never comes.
func withLongReads(c *Config) { c.ReadTimeout = time.Hour }

// dialRaw opens a connection to the real HTTP server at base.
func dialRaw(t *testing.T, base string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(guard)); err != nil {
		t.Fatal(err)
	}
	return conn
}

// rawHead is a POST's request line and headers: a Content-Length, or
// chunked when length is negative.
func rawHead(path string, h http.Header, length int64) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: ingress.test\r\nContent-Type: application/json\r\n", path)
	for k, vs := range h {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	if length >= 0 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", length)
	} else {
		b.WriteString("Transfer-Encoding: chunked\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// readAnswer reads the server's answer from conn.
func readAnswer(t *testing.T, conn net.Conn) answer {
	t.Helper()
	a, _ := readAnswerClose(t, conn)
	return a
}

// readAnswerClose is readAnswer, also telling whether the server said it
// closes the connection.
func readAnswerClose(t *testing.T, conn net.Conn) (answer, bool) {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{code: resp.StatusCode, header: resp.Header, raw: string(raw)}
	if err := json.Unmarshal(raw, &a.reply); err != nil {
		t.Fatalf("answer %d is not JSON: %v: %q", resp.StatusCode, err, raw)
	}
	return a, resp.Close
}

// vectorHeader is the specification vector's signature headers.
func vectorHeader() http.Header {
	h := http.Header{}
	h.Set(signing.HeaderWebhookID, vecID)
	h.Set(signing.HeaderWebhookTimestamp, strconv.Itoa(vecTimestamp))
	h.Set(signing.HeaderWebhookSignature, vecSignature)
	return h
}

// TestContentLengthOverLimitRefusedAtOnce: a Content-Length over the
// source's max_body is answered 413 before the client sends any of the
// body, and the connection is closed rather than read. Before, the body
// was read first: the client that never sends it got no answer until the
// read timeout.
func TestContentLengthOverLimitRefusedAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withMaxBody(1024), withLongReads)
	base := e.serve(t)
	for _, expect := range []bool{false, true} {
		conn := dialRaw(t, base)
		h := vectorHeader()
		if expect {
			h.Set("Expect", "100-continue")
		}
		// Under 256 KiB: the size net/http would read before answering.
		if _, err := conn.Write(rawHead("/webhooks/"+sourceName, h, 4096)); err != nil {
			t.Fatal(err)
		}
		a, closing := readAnswerClose(t, conn) // a 100 Continue would fail to decode as JSON
		if a.code != http.StatusRequestEntityTooLarge || a.reply.Error != "body_too_large" {
			t.Fatalf("expect %v: %d %s, want 413 body_too_large", expect, a.code, a.raw)
		}
		if !strings.Contains(a.reply.Message, "4096") || !closing {
			t.Errorf("expect %v: message %q, Connection: close %v; want the Content-Length named and the connection closed", expect, a.reply.Message, closing)
		}
		if n, err := conn.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Errorf("expect %v: after the answer: %d bytes, %v; want the connection closed", expect, n, err)
		}
	}
	recs, _ := waitAudit(t, e.js, "audit.rejected."+sourceName, 2)
	for _, r := range recs {
		if rj := r.GetWebhookRejected(); rj.Reason != switchyardv1.RejectReason_REJECT_REASON_BODY_TOO_LARGE || rj.BodySize != 4096 {
			t.Errorf("rejection record = %v, want BODY_TOO_LARGE of the announced 4096 bytes", rj)
		}
	}
	if got := testutil.ToFloat64(e.srv.metrics.requests.WithLabelValues(sourceName, "body_too_large")); got != 2 {
		t.Errorf("body_too_large requests = %v, want 2", got)
	}
	if e.srv.budget.highWater() != 0 {
		t.Errorf("refused requests took %d bytes of the bound", e.srv.budget.highWater())
	}
}

// TestRefusalsWithoutTheBodyAnswerAtOnce: the handler's own refusals that
// need no body (an unknown source, the source's rate limit) are answered
// before the client sends it, and close the connection.
func TestRefusalsWithoutTheBodyAnswerAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withLongReads, func(c *Config) { c.Sources[0].RateLimit = config.SourceRateLimit{PerSecond: 0.001, Burst: 1} })
	base := e.serve(t)
	if a := e.post(t, vector()); a.code != http.StatusAccepted { // the one token
		t.Fatalf("first request: %d %s", a.code, a.raw)
	}
	for _, tt := range []struct {
		path string
		code int
	}{{"/webhooks/nobody", http.StatusNotFound}, {"/webhooks/" + sourceName, http.StatusTooManyRequests}} {
		conn := dialRaw(t, base)
		if _, err := conn.Write(rawHead(tt.path, vectorHeader(), 100)); err != nil {
			t.Fatal(err)
		}
		if a, closing := readAnswerClose(t, conn); a.code != tt.code || !closing {
			t.Errorf("%s: %d %s (closing %v), want %d before the body, closing", tt.path, a.code, a.raw, closing, tt.code)
		}
	}
	// A request read to its end keeps its connection.
	body := `{"type":"order.created"}`
	w := signed(t, "msg_keep", body)
	e2 := newEnvOn(t, e.nats, e.js, func(c *Config) { c.Sources[0].Name = "other" })
	base2 := e2.serve(t)
	conn := dialRaw(t, base2)
	h := vectorHeader()
	h.Set(signing.HeaderWebhookID, w.id)
	h.Set(signing.HeaderWebhookSignature, w.signature)
	if _, err := conn.Write(append(rawHead("/webhooks/other", h, int64(len(body))), body...)); err != nil {
		t.Fatal(err)
	}
	if a, closing := readAnswerClose(t, conn); a.code != http.StatusAccepted || closing {
		t.Errorf("a complete request: %d %s (closing %v), want 202 on a kept connection", a.code, a.raw, closing)
	}
}

// TestMissingSignatureRefusedBeforeTheBody: for every scheme, a request
// without one of the headers the scheme needs is refused with the code
// the verifier uses, before the client sends its body.
func TestMissingSignatureRefusedBeforeTheBody(t *testing.T) {
	t.Parallel()
	cases := schemeCases(t)
	var sources []config.Source
	for _, c := range cases {
		sources = append(sources, c.source)
	}
	e := newEnv(t, withNow(schemeNow), withLongReads, func(cfg *Config) { cfg.Sources = sources })
	base := e.serve(t)
	refused := 0
	for _, c := range cases {
		required := requiredHeaders(c.source)
		if len(required) == 0 {
			t.Fatalf("%s: no required headers", c.source.Name)
		}
		for _, missing := range required {
			h := c.sign(true, c.deliveryID, schemeNow, []byte(c.body))
			h.Del(missing)
			conn := dialRaw(t, base)
			if _, err := conn.Write(rawHead("/webhooks/"+c.source.Name, h, int64(len(c.body)))); err != nil {
				t.Fatal(err)
			}
			a := readAnswer(t, conn)
			if a.code != http.StatusUnauthorized || a.reply.Error != c.missingCode {
				t.Errorf("%s without %s: %d %s, want 401 %s before the body", c.source.Name, missing, a.code, a.raw, c.missingCode)
			}
			refused++
		}
	}
	if n := natstest.Count(t, e.js, natsx.StreamEvents, "webhooks.>"); n != 0 {
		t.Errorf("refused requests stored %d events", n)
	}
	recs, _ := waitAudit(t, e.js, "audit.rejected.>", refused)
	for _, r := range recs {
		if rj := r.GetWebhookRejected(); rj.Reason != switchyardv1.RejectReason_REJECT_REASON_MISSING_SIGNATURE &&
			rj.Reason != switchyardv1.RejectReason_REJECT_REASON_UNAUTHORIZED {
			t.Errorf("rejection record = %v, want a missing signature or credentials", rj)
		}
	}
}

// TestRequiredHeadersAreTheVerifiers: the early refusal never refuses what
// a scheme's verifier would accept. Every required header is in what a
// partner sends, and without any one of them the verifier itself refuses
// the request as missing its signature or credentials.
func TestRequiredHeadersAreTheVerifiers(t *testing.T) {
	t.Parallel()
	m := newMetrics(nil, nil, nil)
	for _, c := range schemeCases(t) {
		src, err := newSource(c.source, m)
		if err != nil {
			t.Fatal(err)
		}
		body := []byte(c.body)
		good := c.sign(true, c.deliveryID, schemeNow, body)
		if err := missingHeader(requiredHeaders(c.source), good); err != nil {
			t.Errorf("%s: a signed request is refused early: %v", c.source.Name, err)
		}
		for _, h := range requiredHeaders(c.source) {
			without := good.Clone()
			without.Del(h)
			_, err := src.verifier.Verify(signing.Request{Header: without, Body: body, Now: schemeNow})
			if !errors.Is(err, signing.ErrMissingSignature) && !errors.Is(err, signing.ErrMissingCredentials) {
				t.Errorf("%s without %s: the verifier says %v, want a missing signature or credentials", c.source.Name, h, err)
			}
			early := missingHeader(requiredHeaders(c.source), without)
			if early == nil || verifyRejection(early).code != verifyRejection(err).code {
				t.Errorf("%s without %s: early %v, verifier %v: want the same code", c.source.Name, h, early, err)
			}
		}
	}
}

// TestSignedIDIsRequired: an hmac source whose signed content includes the
// delivery id needs its id header as much as its signature.
func TestSignedIDIsRequired(t *testing.T) {
	t.Parallel()
	cfg := config.Source{Name: "signed-id", Scheme: "hmac", Secrets: []config.Secret{"0123456789abcdef0123"},
		HMAC: config.SourceHMAC{Header: "X-Sig", Algorithm: "sha256", Encoding: "hex", SignedContent: "{id}.{body}"}, IDHeader: "X-Id"}
	src, err := newSource(cfg, newMetrics(nil, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("X-Sig", strings.Repeat("00", 32))
	_, verr := src.verifier.Verify(signing.Request{Header: h, Body: []byte("{}"), Now: schemeNow})
	if early := missingHeader(requiredHeaders(cfg), h); !errors.Is(verr, signing.ErrMissingSignature) || !errors.Is(early, signing.ErrMissingSignature) {
		t.Errorf("without X-Id: verifier %v, early %v; want both a missing signature", verr, early)
	}
	h.Set("X-Id", "d-1")
	if early := missingHeader(requiredHeaders(cfg), h); early != nil {
		t.Errorf("with X-Id: early %v", early)
	}
}

// holdBody starts a webhook whose body is announced but only partly sent,
// and waits until the server holds it in the bound.
func holdBody(t *testing.T, e *testEnv, base string, id string, length int) (net.Conn, []byte) {
	t.Helper()
	before := e.srv.budget.inUse()
	body := []byte(`{"type":"order.created","pad":"` + strings.Repeat("x", length-len(`{"type":"order.created","pad":""}`)) + `"}`)
	w := signed(t, id, string(body))
	h := http.Header{}
	h.Set(signing.HeaderWebhookID, w.id)
	h.Set(signing.HeaderWebhookTimestamp, w.timestamp)
	h.Set(signing.HeaderWebhookSignature, w.signature)
	conn := dialRaw(t, base)
	if _, err := conn.Write(append(rawHead("/webhooks/"+sourceName, h, int64(len(body))), body[:len(body)/2]...)); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, "the server to take the body into the bound", func() bool { return e.srv.budget.inUse() >= before+int64(len(body)) })
	return conn, body
}

// TestOverTheBoundAnswers503WithRetryAfter: with the bound on bytes in
// flight taken by bodies being read, a webhook is answered 503 with
// Retry-After before its body is read, a chunked one as soon as it would
// go over; the bodies in flight finish and are stored, and the refused
// request is stored when it is sent again: nothing accepted is lost.
func TestOverTheBoundAnswers503WithRetryAfter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withMaxBody(1024), withLongReads, func(c *Config) { c.MaxBody, c.MaxBytesInFlight = 1024, 2048 })
	base := e.serve(t)
	c1, b1 := holdBody(t, e, base, "msg_slow_1", 1024)
	c2, b2 := holdBody(t, e, base, "msg_slow_2", 1000)

	// 48 bytes left: a 100-byte body does not fit.
	late := signed(t, "msg_late", `{"type":"order.created","pad":"`+strings.Repeat("z", 68)+`"}`)
	h := vectorHeader()
	h.Set(signing.HeaderWebhookID, late.id)
	h.Set(signing.HeaderWebhookSignature, late.signature)
	conn := dialRaw(t, base)
	if _, err := conn.Write(rawHead("/webhooks/"+sourceName, h, int64(len(late.body)))); err != nil {
		t.Fatal(err)
	}
	a := readAnswer(t, conn)
	if a.code != http.StatusServiceUnavailable || a.reply.Error != "overloaded" || a.header.Get("Retry-After") != "5" {
		t.Fatalf("over the bound: %d %s Retry-After %q, want 503 overloaded with Retry-After 5", a.code, a.raw, a.header.Get("Retry-After"))
	}

	// Chunked: taken as it is read, refused when a chunk goes over.
	chunked := dialRaw(t, base)
	chunk := strings.Repeat("c", 100)
	if _, err := chunked.Write(append(rawHead("/webhooks/"+sourceName, h, -1), fmt.Sprintf("%x\r\n%s\r\n", len(chunk), chunk)...)); err != nil {
		t.Fatal(err)
	}
	if a := readAnswer(t, chunked); a.code != http.StatusServiceUnavailable || a.reply.Error != "overloaded" || a.header.Get("Retry-After") == "" {
		t.Fatalf("chunked over the bound: %d %s, want 503 overloaded with Retry-After", a.code, a.raw)
	}
	if got := testutil.ToFloat64(e.srv.metrics.overloaded.WithLabelValues(routeWebhooks)); got != 2 {
		t.Errorf("overloaded webhooks = %v, want 2", got)
	}
	if got := testutil.ToFloat64(e.srv.metrics.requests.WithLabelValues(sourceName, outcomeOverloaded)); got != 2 {
		t.Errorf("requests with outcome overloaded = %v, want 2", got)
	}

	// The bodies in flight finish and are stored.
	for i, held := range []struct {
		conn net.Conn
		body []byte
	}{{c1, b1}, {c2, b2}} {
		if _, err := held.conn.Write(held.body[len(held.body)/2:]); err != nil {
			t.Fatal(err)
		}
		if a := readAnswer(t, held.conn); a.code != http.StatusAccepted {
			t.Fatalf("held body %d: %d %s, want 202", i+1, a.code, a.raw)
		}
	}
	waitfor.True(t, "the bound to be free", func() bool { return e.srv.budget.inUse() == 0 })
	// The partner retries the refused request: it is stored.
	if a := e.post(t, late); a.code != http.StatusAccepted {
		t.Fatalf("the refused request sent again: %d %s, want 202", a.code, a.raw)
	}
	if n := eventCount(t, e.js); n != 3 {
		t.Errorf("EVENTS holds %d events, want the 3 accepted", n)
	}
	if hw := e.srv.budget.highWater(); hw > 2048 {
		t.Errorf("%d bytes were held at once, over the bound of 2048", hw)
	}
}

// TestPublishAPIAdmission: the publish API shares the bound, and refuses a
// Content-Length over ingress.max_body before the body, but only to a
// caller with a valid key; others get their 401.
func TestPublishAPIAdmission(t *testing.T) {
	t.Parallel()
	const key = "k-0123456789abcdef"
	e := newEnv(t, withMaxBody(1024), withLongReads, func(c *Config) {
		c.MaxBody = 1024
		c.MaxBytesInFlight = 2048
		c.APIKeys = []config.IngressAPIKey{{Name: "billing", Key: key}}
	})
	base := e.serve(t)
	auth := http.Header{}
	auth.Set("Authorization", "Bearer "+key)
	conn := dialRaw(t, base)
	if _, err := conn.Write(rawHead("/v1/events", auth, 4096)); err != nil {
		t.Fatal(err)
	}
	if a := readAnswer(t, conn); a.code != http.StatusRequestEntityTooLarge || a.reply.Error != "body_too_large" {
		t.Fatalf("API over max_body: %d %s, want 413 before the body", a.code, a.raw)
	}
	conn = dialRaw(t, base)
	if _, err := conn.Write(rawHead("/v1/events/batch", http.Header{}, 4096)); err != nil {
		t.Fatal(err)
	}
	if a, closing := readAnswerClose(t, conn); a.code != http.StatusUnauthorized || !closing {
		t.Fatalf("API without a key: %d %s (closing %v), want 401 before the body, closing", a.code, a.raw, closing)
	}

	_, _ = holdBody(t, e, base, "msg_slow_api", 1024)
	_, _ = holdBody(t, e, base, "msg_slow_api_2", 1024)
	conn = dialRaw(t, base)
	if _, err := conn.Write(rawHead("/v1/events?type=order.created", auth, 10)); err != nil {
		t.Fatal(err)
	}
	a := readAnswer(t, conn)
	if a.code != http.StatusServiceUnavailable || a.reply.Error != "overloaded" || a.header.Get("Retry-After") == "" {
		t.Fatalf("API over the bound: %d %s, want 503 overloaded with Retry-After", a.code, a.raw)
	}
	if got := testutil.ToFloat64(e.srv.metrics.overloaded.WithLabelValues(routeAPI)); got != 1 {
		t.Errorf("overloaded API requests = %v, want 1", got)
	}
	if got := testutil.ToFloat64(e.srv.metrics.published.WithLabelValues("billing", statusUnavailable)); got != 1 {
		t.Errorf("billing's unavailable events = %v, want 1", got)
	}
}

// countingListener counts what the server reads from each connection, by
// the client's address.
type countingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[string]*atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	n := new(atomic.Int64)
	l.mu.Lock()
	l.conns[c.RemoteAddr().String()] = n
	l.mu.Unlock()
	return &countingConn{Conn: c, n: n}, nil
}

func (l *countingListener) read(client string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.conns[client]; n != nil {
		return n.Load()
	}
	return 0
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// slowLoad is a run of slow connections against one server.
type slowLoad struct {
	// heapGrowth is the live heap with every connection open (after a
	// GC) less the live heap before the first.
	heapGrowth int64
	admitted   int
	refused    int
	highWater  int64
	overloaded float64
}

// liveHeap reads the memory statistics after two collections: the second
// empties the pools' victim caches (the server pools body buffers).
func liveHeap(m *runtime.MemStats) {
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(m)
}

// slowConnections opens conns connections that each announce a body of
// length bytes, send half of it and stop; it waits until the server has
// read everything sent on every connection it did not refuse, measures the
// heap, and closes them.
func slowConnections(t *testing.T, bound int64, conns, length int) slowLoad {
	t.Helper()
	e := newEnv(t, withMaxBody(config.ByteSize(length)), withLongReads, func(c *Config) {
		c.MaxBody, c.MaxBytesInFlight = int64(length), bound
		// Thousands of requests in a moment: past the default rate limit.
		c.Sources[0].RateLimit = config.SourceRateLimit{Unlimited: true}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	counting := &countingListener{Listener: ln, conns: map[string]*atomic.Int64{}}
	natstest.Go(t, "ingress HTTP server", func(ctx context.Context) error {
		return httpserve.Serve(ctx, "ingress", counting, e.srv.Handler(), natstest.Logger(t), httpserve.WithReadTimeout(time.Hour))
	})
	head := rawHead("/webhooks/"+sourceName, vectorHeader(), int64(length))
	half := make([]byte, length/2)
	for i := range half {
		half[i] = 'x'
	}
	sent := append(append([]byte(nil), head...), half...)

	var before runtime.MemStats
	liveHeap(&before)

	type client struct {
		conn   net.Conn
		status atomic.Int32
	}
	clients := make([]*client, conns)
	var wg sync.WaitGroup
	dials := make(chan struct{}, 64) // at most 64 connections being set up at once
	for i := range clients {
		c := &client{}
		clients[i] = c
		dials <- struct{}{}
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		c.conn = conn
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, werr := conn.Write(sent)
			<-dials
			if werr != nil {
				// Refused and closed while the rest was written: the
				// answer may still be readable.
				c.status.Store(-1)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				if c.status.Load() == 0 {
					c.status.Store(-2)
				}
				return
			}
			_ = resp.Body.Close()
			c.status.Store(int32(resp.StatusCode))
		}()
	}
	// Closed before the next run: the race detector allows 8128
	// goroutines, and each run has two per connection.
	defer func() {
		for _, c := range clients {
			_ = c.conn.Close()
		}
		wg.Wait()
		waitfor.True(t, "the server to let go of every body", func() bool { return e.srv.budget.inUse() == 0 })
	}()
	var load slowLoad
	waitfor.Explained(t, 2*time.Minute, "every connection answered or read to the last byte sent", func() (bool, string) {
		load.admitted, load.refused = 0, 0
		for i, c := range clients {
			switch s := c.status.Load(); {
			case s == http.StatusServiceUnavailable:
				load.refused++
			case s != 0:
				return false, fmt.Sprintf("connection %d: status %d", i, s)
			case counting.read(c.conn.LocalAddr().String()) < int64(len(sent)):
				return false, fmt.Sprintf("connection %d: the server read %d of %d bytes", i, counting.read(c.conn.LocalAddr().String()), len(sent))
			default:
				load.admitted++
			}
		}
		return true, ""
	})
	var after runtime.MemStats
	liveHeap(&after)
	load.heapGrowth = int64(after.HeapAlloc) - int64(before.HeapAlloc)
	load.highWater = e.srv.budget.highWater()
	load.overloaded = testutil.ToFloat64(e.srv.metrics.overloaded.WithLabelValues(routeWebhooks))
	runtime.KeepAlive(clients)
	return load
}

// TestSlowConnectionsHoldBoundedMemory: 2,000 connections each announce a
// 64 KiB webhook and send half of it. Without a bound the server holds
// every half-read body; with ingress.max_bytes_in_flight at 1 MiB it holds
// 16 and answers the rest 503 at once. The bound is asserted on the bytes
// taken (the budget's high-water mark and the overloaded counter); the
// heap is measured for docs/measurements.md and compared between the runs.
func TestSlowConnectionsHoldBoundedMemory(t *testing.T) {
	const (
		conns  = 2000
		length = 64 << 10
		bound  = 1 << 20
	)
	unbounded := slowConnections(t, 1<<40, conns, length)
	bounded := slowConnections(t, bound, conns, length)
	t.Logf("without a bound: %d held, %d refused, %d bytes taken at most, heap +%.1f MiB", unbounded.admitted, unbounded.refused, unbounded.highWater, float64(unbounded.heapGrowth)/(1<<20))
	t.Logf("with a 1 MiB bound: %d held, %d refused, %d bytes taken at most, heap +%.1f MiB", bounded.admitted, bounded.refused, bounded.highWater, float64(bounded.heapGrowth)/(1<<20))

	if unbounded.admitted != conns || unbounded.highWater != conns*length {
		t.Errorf("without a bound: %d connections held, %d bytes taken; want all %d and %d", unbounded.admitted, unbounded.highWater, conns, conns*length)
	}
	if want := bound / length; bounded.admitted != want || bounded.refused != conns-want || bounded.overloaded != float64(conns-want) {
		t.Errorf("with the bound: %d held, %d refused, %v counted overloaded; want %d held and the other %d refused and counted", bounded.admitted, bounded.refused, bounded.overloaded, want, conns-want)
	}
	if bounded.highWater > bound {
		t.Errorf("with the bound: %d bytes taken at once, over %d", bounded.highWater, bound)
	}
	// What the bodies take: without a bound every half body is in memory.
	if unbounded.heapGrowth < conns*length/2 {
		t.Errorf("without a bound the heap grew by %d bytes, less than the %d bytes of half bodies read: the measure is wrong", unbounded.heapGrowth, conns*length/2)
	}
	if bounded.heapGrowth > unbounded.heapGrowth/4 {
		t.Errorf("with the bound the heap grew by %d bytes, more than a quarter of the %d without", bounded.heapGrowth, unbounded.heapGrowth)
	}
}
