package runner

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/destinations"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/dispatcher/internal/ids"
)

// A short schedule: each step is at least timeout + AckMargin(timeout).
const (
	testTimeout = 300 * time.Millisecond
	step1       = 600 * time.Millisecond
	step2       = 900 * time.Millisecond
)

// reply is what the fake partner answers to one request.
type reply struct {
	status int
	header map[string]string
	body   string
	// hang makes the partner wait for the client to give up (or for
	// release to close).
	hang    bool
	release <-chan struct{}
}

// hit is one request the fake partner received.
type hit struct {
	at     time.Time
	header http.Header
	body   []byte
	// path is the request's URL path, escaped.
	path string
	// handedOut is when JetStream handed this delivery to the dispatcher,
	// when the partner was asked to find out (see partner.handedOut).
	handedOut time.Time
}

// partner is a fake partner API whose answers follow a script; past the end
// of the script it repeats the last answer.
type partner struct {
	*httptest.Server
	mu     sync.Mutex
	hits   []hit
	script []reply
	// answer, when set, replaces the script: it picks the reply from the
	// request (its body, its headers).
	answer func(h hit) reply
	// handedOut, when set, is called on each request to learn when the
	// server delivered the message being attempted.
	handedOut func() time.Time
}

func newPartner(t *testing.T, script ...reply) *partner {
	t.Helper()
	return startPartner(t, &partner{script: script})
}

// newAnsweringPartner is a partner whose answer depends on the request.
func newAnsweringPartner(t *testing.T, answer func(h hit) reply) *partner {
	t.Helper()
	return startPartner(t, &partner{answer: answer})
}

func startPartner(t *testing.T, p *partner) *partner {
	t.Helper()
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		body, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		var handedOut time.Time
		if p.handedOut != nil {
			handedOut = p.handedOut()
		}
		n := len(p.hits)
		h := hit{at: at, header: r.Header.Clone(), body: body, path: r.URL.EscapedPath(), handedOut: handedOut}
		p.hits = append(p.hits, h)
		var rep reply
		if p.answer != nil {
			rep = p.answer(h)
		} else {
			rep = p.script[min(n, len(p.script)-1)]
		}
		p.mu.Unlock()
		if rep.hang {
			select {
			case <-r.Context().Done():
			case <-rep.release:
			case <-time.After(30 * time.Second):
			}
			return
		}
		for k, v := range rep.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(rep.status)
		_, _ = io.WriteString(w, rep.body)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *partner) received() []hit {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]hit(nil), p.hits...)
}

func destinationFor(name, url string, maxAttempts int) config.Destination {
	return config.Destination{
		Name:                name,
		URL:                 url,
		Subjects:            []string{"events.order.>"},
		Timeout:             config.Duration(testTimeout),
		Retry:               config.Retry{Backoff: []config.Duration{config.Duration(step1), config.Duration(step2)}, MaxAttempts: maxAttempts},
		Concurrency:         4,
		MaxAckPending:       100,
		AllowPrivateNetwork: true,
	}
}

// checkDestination applies the configuration's own validation, so that the
// tests never run a schedule the product would refuse.
func checkDestination(t *testing.T, d config.Destination) {
	t.Helper()
	c := config.Config{Destinations: []config.Destination{d}}.WithDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("test destination is not valid: %v", err)
	}
}

type testEnv struct {
	nats *natstest.Server
	js   jetstream.JetStream
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	return &testEnv{nats: ns, js: js}
}

// start provisions and runs a dispatcher until the test ends.
func (e *testEnv) start(t *testing.T, dests ...config.Destination) *Dispatcher {
	t.Helper()
	return e.run(t, e.js, nil, dests...).d
}

// running is a dispatcher a test runs; stop ends it before the test does.
type running struct {
	d      *Dispatcher
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

// stop cancels the dispatcher's context and waits for Run to return.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("Run returned %v after cancel", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after its context was cancelled")
		}
	})
}

// run provisions and runs a dispatcher on js (a connection of its own for a
// second replica); configure adjusts its Config.
func (e *testEnv) run(t *testing.T, js jetstream.JetStream, configure func(*Config), dests ...config.Destination) *running {
	t.Helper()
	for _, d := range dests {
		checkDestination(t, d)
	}
	cfg := Config{
		Destinations:  dests,
		Logger:        natstest.Logger(t),
		FetchWait:     200 * time.Millisecond,
		ShutdownGrace: 2 * time.Second,
		BreakerSync:   50 * time.Millisecond,
	}
	if configure != nil {
		configure(&cfg)
	}
	d, err := New(js, auditlog.NewEmitter(js, "dispatcher"), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// Provision before running, so that the consumers (DeliverNew) exist
	// before the test publishes.
	if err := d.Provision(ctx); err != nil {
		cancel()
		t.Fatalf("Provision: %v", err)
	}
	r := &running{d: d, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- d.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (e *testEnv) publish(t *testing.T, ev events.Event) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := events.Publish(ctx, e.js, ev)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return res.Sequence
}

func (e *testEnv) consumerInfo(t *testing.T, destination string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := e.js.Consumer(ctx, natsx.StreamEvents, ConsumerName(destination))
	if err != nil {
		t.Fatalf("consumer of %s: %v", destination, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("consumer info of %s: %v", destination, err)
	}
	return info
}

// lastDelivered returns a function that reads when the destination's
// consumer last handed out a message. It is called from the partner's
// handler goroutine, so it reports failure as a zero time, not t.Fatal.
func (e *testEnv) lastDelivered(destination string) func() time.Time {
	return func() time.Time {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := e.js.Consumer(ctx, natsx.StreamEvents, ConsumerName(destination))
		if err != nil {
			return time.Time{}
		}
		info, err := c.Info(ctx)
		if err != nil || info.Delivered.Last == nil {
			return time.Time{}
		}
		return *info.Delivered.Last
	}
}

// waitSettled waits until the destination's consumer has delivered at
// least delivered times and has nothing pending or unacknowledged.
func (e *testEnv) waitSettled(t *testing.T, destination string, delivered uint64) *jetstream.ConsumerInfo {
	t.Helper()
	var info *jetstream.ConsumerInfo
	waitfor.True(t, fmt.Sprintf("consumer of %s settled after %d deliveries", destination, delivered), func() bool {
		info = e.consumerInfo(t, destination)
		return info.Delivered.Consumer >= delivered && info.NumAckPending == 0 && info.NumPending == 0
	})
	return info
}

// attempts returns the attempt records for destination, in stream order.
func attempts(t *testing.T, js jetstream.JetStream, destination string) ([]*switchyardv1.AuditRecord, []*switchyardv1.DeliveryAttempt) {
	t.Helper()
	recs := natstest.AuditRecords(t, js, "audit."+auditlog.KindAttempt+"."+destination)
	var out []*switchyardv1.DeliveryAttempt
	for _, rec := range recs {
		out = append(out, rec.GetDeliveryAttempt())
	}
	return recs, out
}

func deadLetters(t *testing.T, js jetstream.JetStream, destination string) ([]*jetstream.RawStreamMsg, []*switchyardv1.DeadLetter) {
	t.Helper()
	msgs := natstest.StreamMsgs(t, js, natsx.StreamDeadLetters, "dlq."+destination)
	var out []*switchyardv1.DeadLetter
	for _, m := range msgs {
		var dl switchyardv1.DeadLetter
		if err := proto.Unmarshal(m.Data, &dl); err != nil {
			t.Fatalf("decode dead letter: %v", err)
		}
		out = append(out, &dl)
	}
	return msgs, out
}

func orderEvent(id string) events.Event {
	return events.Event{ID: id, Type: "order.created", Data: []byte(`{"order":"` + id + `"}`), ContentType: "application/json; charset=utf-8"}
}

// incarnation is the id token of the test's EVENTS stream.
func (e *testEnv) incarnation(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, natsx.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	return ids.StreamIncarnation(s.CachedInfo().Created)
}

func checkAttemptIDs(t *testing.T, e *testEnv, recs []*switchyardv1.AuditRecord, seq uint64, destination string) {
	t.Helper()
	inc := e.incarnation(t)
	for i, rec := range recs {
		if want := fmt.Sprintf("attempt:EVENTS@%s:%d:%s:%d", inc, seq, destination, i+1); rec.Id != want {
			t.Errorf("attempt record %d id = %q, want %q", i+1, rec.Id, want)
		}
		if rec.Service != "dispatcher" {
			t.Errorf("attempt record %d service = %q", i+1, rec.Service)
		}
	}
}

func TestDeliversOnceAndAcks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusOK, body: "thanks"})
	e.start(t, destinationFor("erp", p.URL, 3))

	ev := orderEvent("ev-success")
	seq := e.publish(t, ev)
	info := e.waitSettled(t, "erp", 1)

	if info.Delivered.Consumer != 1 || info.NumRedelivered != 0 || info.AckFloor.Stream != seq {
		t.Errorf("consumer delivered %d times (redelivered %d, ack floor %d), want once, acked at %d",
			info.Delivered.Consumer, info.NumRedelivered, info.AckFloor.Stream, seq)
	}
	hits := p.received()
	if len(hits) != 1 {
		t.Fatalf("partner got %d requests, want 1", len(hits))
	}
	h := hits[0]
	if string(h.body) != string(ev.Data) {
		t.Errorf("body = %q, want %q", h.body, ev.Data)
	}
	for k, want := range map[string]string{
		"Idempotency-Key":       ev.ID,
		"Content-Type":          ev.ContentType,
		"Switchyard-Event-Type": "order.created",
		"Switchyard-Attempt":    "1",
	} {
		if got := h.header.Get(k); got != want {
			t.Errorf("request header %s = %q, want %q", k, got, want)
		}
	}

	recs, as := attempts(t, e.js, "erp")
	if len(as) != 1 {
		t.Fatalf("%d attempt records, want 1", len(as))
	}
	checkAttemptIDs(t, e, recs, seq, "erp")
	a := as[0]
	if a.EventId != ev.ID || a.Destination != "erp" || a.Subject != "events.order.created" || a.StreamSeq != seq ||
		a.Attempt != 1 || a.MaxAttempts != 3 || a.StatusCode != 200 || a.Outcome != switchyardv1.Outcome_OUTCOME_DELIVERED ||
		!a.Final || a.Error != "" || a.ResponseSnippet != "thanks" || a.EventType != "order.created" {
		t.Errorf("attempt record = %v", a)
	}
	if _, dls := deadLetters(t, e.js, "erp"); len(dls) != 0 {
		t.Errorf("%d dead letters, want none", len(dls))
	}
}

func TestRetriesOnScheduleThenDelivers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t,
		reply{status: http.StatusServiceUnavailable, body: "busy"},
		reply{status: http.StatusServiceUnavailable, body: "busy"},
		reply{status: http.StatusOK},
	)
	p.mu.Lock()
	p.handedOut = e.lastDelivered("erp")
	p.mu.Unlock()
	e.start(t, destinationFor("erp", p.URL, 5))

	seq := e.publish(t, orderEvent("ev-flaky"))
	e.waitSettled(t, "erp", 3)

	hits := p.received()
	if len(hits) != 3 {
		t.Fatalf("partner got %d requests, want exactly 3", len(hits))
	}
	// The server redelivers a BackOff step after it handed out the previous
	// delivery, which is a little before the partner saw it: measure from
	// the hand-out, and assert the lower bound only. The server stamps the
	// hand-out time just after it starts the ack-wait clock, so allow it a
	// few milliseconds of bookkeeping.
	const bookkeeping = 10 * time.Millisecond
	for i, want := range []time.Duration{step1, step2} {
		if hits[i].handedOut.IsZero() {
			t.Fatalf("hand-out time of attempt %d unknown", i+1)
		}
		if gap := hits[i+1].at.Sub(hits[i].handedOut); gap < want-bookkeeping {
			t.Errorf("attempt %d came %v after attempt %d was handed out, want at least the backoff step %v", i+2, gap, i+1, want)
		}
	}
	for i, h := range hits {
		if got := h.header.Get("Switchyard-Attempt"); got != fmt.Sprint(i+1) {
			t.Errorf("request %d Switchyard-Attempt = %q", i+1, got)
		}
		if got := h.header.Get("Idempotency-Key"); got != "ev-flaky" {
			t.Errorf("request %d Idempotency-Key = %q: every attempt carries the event id", i+1, got)
		}
	}

	recs, as := attempts(t, e.js, "erp")
	if len(as) != 3 {
		t.Fatalf("%d attempt records, want 3", len(as))
	}
	checkAttemptIDs(t, e, recs, seq, "erp")
	for i, a := range as {
		wantOutcome, wantFinal := switchyardv1.Outcome_OUTCOME_RETRYABLE, false
		if i == 2 {
			wantOutcome, wantFinal = switchyardv1.Outcome_OUTCOME_DELIVERED, true
		}
		if a.Attempt != int32(i+1) || a.Outcome != wantOutcome || a.Final != wantFinal {
			t.Errorf("attempt record %d = %v", i+1, a)
		}
	}
	if _, dls := deadLetters(t, e.js, "erp"); len(dls) != 0 {
		t.Errorf("%d dead letters, want none", len(dls))
	}
}

func TestDeadLettersAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusInternalServerError, body: "boom"})
	// A healthy destination on the same events is not held up by the failing one.
	ok := newPartner(t, reply{status: http.StatusNoContent})
	healthy := destinationFor("crm", ok.URL, 3)
	e.start(t, destinationFor("erp", p.URL, 3), healthy)

	ev := orderEvent("ev-doomed")
	ev.Header = nats.Header{"X-Trace": {"abc"}}
	seq := e.publish(t, ev)
	info := e.waitSettled(t, "erp", 3)

	if n := len(p.received()); n != 3 {
		t.Errorf("partner got %d requests, want max_attempts = 3", n)
	}
	if info.Delivered.Consumer != 3 {
		t.Errorf("consumer delivered %d times, want 3", info.Delivered.Consumer)
	}
	msgs, dls := deadLetters(t, e.js, "erp")
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want exactly 1", len(dls))
	}
	dl := dls[0]
	wantID := fmt.Sprintf("EVENTS@%s:%d:erp", e.incarnation(t), seq)
	if got := msgs[0].Header.Get(nats.MsgIdHdr); got != wantID {
		t.Errorf("dead letter Nats-Msg-Id = %q, want %q", got, wantID)
	}
	if dl.Id != wantID || dl.EventId != ev.ID || dl.Destination != "erp" || dl.Subject != "events.order.created" ||
		dl.Stream != "EVENTS" || dl.StreamSeq != seq || dl.Attempts != 3 || dl.LastStatusCode != 500 ||
		dl.Reason != switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_ATTEMPTS || dl.ResponseSnippet != "boom" ||
		!strings.Contains(dl.LastError, "500") || dl.EventType != "order.created" || dl.DeadLetteredAt == nil {
		t.Errorf("dead letter = %v", dl)
	}
	if string(dl.Payload) != string(ev.Data) {
		t.Errorf("dead letter payload = %q, want %q", dl.Payload, ev.Data)
	}
	if dl.Headers[events.HeaderEventID] != ev.ID || dl.Headers["X-Trace"] != "abc" || dl.Headers[events.HeaderContentType] != ev.ContentType {
		t.Errorf("dead letter headers = %v", dl.Headers)
	}
	if _, ok := dl.Headers[nats.MsgIdHdr]; ok {
		t.Error("dead letter keeps the event's Nats-Msg-Id header")
	}

	recs, as := attempts(t, e.js, "erp")
	if len(as) != 3 {
		t.Fatalf("%d attempt records, want 3", len(as))
	}
	checkAttemptIDs(t, e, recs, seq, "erp")
	for i, a := range as {
		if a.Final != (i == 2) || a.Outcome != switchyardv1.Outcome_OUTCOME_RETRYABLE || a.StatusCode != 500 {
			t.Errorf("attempt record %d = %v", i+1, a)
		}
	}

	// The audit copy of the dead letter has a deterministic id and no payload.
	var audited []*switchyardv1.AuditRecord
	for _, m := range natstest.StreamMsgs(t, e.js, natsx.StreamAudit, "audit.dead_letter.erp") {
		rec, err := auditlog.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		audited = append(audited, rec)
	}
	if len(audited) != 1 {
		t.Fatalf("%d dead letter audit records, want 1", len(audited))
	}
	if got := audited[0]; got.Id != "dead_letter:"+wantID || got.GetDeadLettered().GetId() != wantID || len(got.GetDeadLettered().GetPayload()) != 0 || len(got.GetDeadLettered().GetHeaders()) != 0 {
		t.Errorf("dead letter audit record = %v", got)
	}

	// The other destination got the event once and is done.
	e.waitSettled(t, "crm", 1)
	if n := len(ok.received()); n != 1 {
		t.Errorf("healthy destination got %d requests, want 1", n)
	}
	if _, dls := deadLetters(t, e.js, "crm"); len(dls) != 0 {
		t.Errorf("healthy destination has %d dead letters", len(dls))
	}
}

func TestPermanentFailureDeadLettersAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusBadRequest, body: `{"error":"missing field sku"}`})
	e.start(t, destinationFor("erp", p.URL, 5))

	seq := e.publish(t, orderEvent("ev-bad"))
	e.waitSettled(t, "erp", 1)
	_, dls := deadLetters(t, e.js, "erp")
	if len(dls) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dls))
	}
	if n := len(p.received()); n != 1 {
		t.Errorf("partner got %d requests, want 1", n)
	}
	dl := dls[0]
	if dl.Attempts != 1 || dl.LastStatusCode != 400 || dl.StreamSeq != seq ||
		dl.Reason != switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_PERMANENT_FAILURE ||
		dl.ResponseSnippet != `{"error":"missing field sku"}` {
		t.Errorf("dead letter = %v", dl)
	}
	_, as := attempts(t, e.js, "erp")
	if len(as) != 1 || as[0].Outcome != switchyardv1.Outcome_OUTCOME_PERMANENT || !as[0].Final {
		t.Errorf("attempt records = %v", as)
	}
}

func TestBlockedAddressDeadLettersWithoutRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusOK})
	d := destinationFor("erp", p.URL, 5)
	d.AllowPrivateNetwork = false
	e.start(t, d)

	e.publish(t, orderEvent("ev-ssrf"))
	e.waitSettled(t, "erp", 1)
	if n := len(p.received()); n != 0 {
		t.Errorf("the private address was reached %d times", n)
	}
	_, dls := deadLetters(t, e.js, "erp")
	if len(dls) != 1 || dls[0].Reason != switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_PERMANENT_FAILURE ||
		dls[0].Attempts != 1 || dls[0].LastStatusCode != 0 || !strings.Contains(dls[0].LastError, "allow_private_network") {
		t.Errorf("dead letters = %v", dls)
	}
}

// Retry-After on 429 and 503 is honoured, never retried sooner: on the
// first attempt, and on a later one, where the server's redelivery of a
// nak with delay would add the schedule's growth that NakDelay takes off.
func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		first []reply // before the answer with Retry-After
		limit reply
	}{
		{"429 on the first attempt", nil, reply{status: http.StatusTooManyRequests, header: map[string]string{"Retry-After": "2"}}},
		{"503 on the second attempt", []reply{{status: http.StatusServiceUnavailable}},
			reply{status: http.StatusServiceUnavailable, header: map[string]string{"Retry-After": "2"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			p := newPartner(t, append(append(tt.first, tt.limit), reply{status: http.StatusOK})...)
			e.start(t, destinationFor("erp", p.URL, 5))

			e.publish(t, orderEvent("ev-limited"))
			k := len(tt.first) // index of the limited attempt
			e.waitSettled(t, "erp", uint64(k+2))
			hits := p.received()
			if len(hits) != k+2 {
				t.Fatalf("partner got %d requests, want %d", len(hits), k+2)
			}
			// The delay starts after the answer arrived, so no hand-over
			// allowance.
			if gap := hits[k+1].at.Sub(hits[k].at); gap < 2*time.Second {
				t.Errorf("retried %v after a %d with Retry-After: 2, want at least 2s (backoff steps %v, %v)", gap, tt.limit.status, step1, step2)
			}
			_, as := attempts(t, e.js, "erp")
			if len(as) != k+2 {
				t.Fatalf("%d attempt records, want %d", len(as), k+2)
			}
			if a := as[k]; a.StatusCode != int32(tt.limit.status) || a.GetRetryAfter().AsDuration() != 2*time.Second || a.Final {
				t.Errorf("attempt record with Retry-After = %v", a)
			}
		})
	}
}

func TestTimeoutIsRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{hang: true}, reply{status: http.StatusOK})
	e.start(t, destinationFor("erp", p.URL, 5))

	e.publish(t, orderEvent("ev-slow"))
	e.waitSettled(t, "erp", 2)
	if n := len(p.received()); n != 2 {
		t.Errorf("partner got %d requests, want 2: an attempt still running must not be redelivered", n)
	}
	_, as := attempts(t, e.js, "erp")
	if len(as) != 2 {
		t.Fatalf("%d attempt records, want 2", len(as))
	}
	if a := as[0]; a.StatusCode != 0 || a.Outcome != switchyardv1.Outcome_OUTCOME_RETRYABLE || !strings.Contains(a.Error, "timeout") {
		t.Errorf("first attempt record = %v", a)
	}
	if a := as[1]; a.Outcome != switchyardv1.Outcome_OUTCOME_DELIVERED || !a.Final {
		t.Errorf("second attempt record = %v", a)
	}
}

// publishReplay republishes a dead letter as the auditor's replay API does:
// on replay.<destination>.<original subject>, with the original event id
// and the dead letter id in Switchyard-Replay-Of. It returns the replay's
// stream sequence.
func (e *testEnv) publishReplay(t *testing.T, destination, eventID, deadLetterID string) uint64 {
	t.Helper()
	m := nats.NewMsg(events.ReplaySubject(destination, "events.order.created"))
	m.Header.Set(nats.MsgIdHdr, "replay:"+deadLetterID+":1")
	m.Header.Set(events.HeaderEventID, eventID)
	m.Header.Set(events.HeaderEventType, "order.created")
	m.Header.Set(events.HeaderReplayOf, deadLetterID)
	m.Header.Set(events.HeaderContentType, "application/json")
	m.Data = []byte(`{"order":"` + eventID + `"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := e.js.PublishMsg(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func TestReplayGoesOnlyToItsDestination(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	erp := newPartner(t, reply{status: http.StatusOK})
	crm := newPartner(t, reply{status: http.StatusOK})
	e.start(t, destinationFor("erp", erp.URL, 3), destinationFor("crm", crm.URL, 3))

	e.publishReplay(t, "erp", "ev-replayed", "EVENTS:7:erp")
	e.waitSettled(t, "erp", 1)
	hits := erp.received()
	if len(hits) != 1 || hits[0].header.Get("Idempotency-Key") != "ev-replayed" {
		t.Fatalf("erp requests = %d", len(hits))
	}
	if info := e.consumerInfo(t, "crm"); info.Delivered.Consumer != 0 || info.NumPending != 0 {
		t.Errorf("crm consumer saw the replay for erp: %+v", info.Delivered)
	}
	_, as := attempts(t, e.js, "erp")
	if len(as) != 1 || as[0].ReplayOf != "EVENTS:7:erp" {
		t.Errorf("attempt records = %v", as)
	}
}

func TestProvision(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	log := natstest.Logger(t)
	provision := func(dests ...config.Destination) {
		t.Helper()
		d, err := New(e.js, auditlog.NewEmitter(e.js, "dispatcher"), Config{Destinations: dests, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Provision(ctx); err != nil {
			t.Fatalf("Provision: %v", err)
		}
	}

	// A consumer the dispatcher does not own.
	if _, err := e.js.CreateOrUpdateConsumer(ctx, natsx.StreamEvents, jetstream.ConsumerConfig{
		Durable: "someone-else", FilterSubject: "events.>", AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}

	provision(destinationFor("erp", "https://erp.example/hooks", 3), destinationFor("crm", "https://crm.example/hooks", 3))
	erp := e.consumerInfo(t, "erp")
	if erp.Config.MaxDeliver != 3 || erp.Config.AckWait != step1 ||
		fmt.Sprint(erp.Config.BackOff) != fmt.Sprint([]time.Duration{step1, step2}) ||
		fmt.Sprint(erp.Config.FilterSubjects) != fmt.Sprint([]string{"events.order.>", "replay.erp.>"}) ||
		erp.Config.Metadata[destinations.MetadataKey] != "erp" || erp.Config.DeliverPolicy != jetstream.DeliverNewPolicy ||
		erp.Config.MaxAckPending != 100 {
		t.Errorf("erp consumer config = %+v", erp.Config)
	}
	e.consumerInfo(t, "crm")

	// An event waits in the erp consumer while no dispatcher runs.
	e.publish(t, orderEvent("ev-waiting"))
	if info := e.consumerInfo(t, "erp"); info.NumPending != 1 {
		t.Fatalf("erp pending = %d, want 1", info.NumPending)
	}

	// crm leaves the configuration; erp's policy changes. crm's consumer
	// stays: another replica may still be configured with it.
	provision(destinationFor("erp", "https://erp.example/hooks", 5))
	if crm := e.consumerInfo(t, "crm"); crm.NumPending != 1 {
		t.Errorf("crm consumer after it left this configuration: %d pending, want the event still waiting", crm.NumPending)
	}
	updated := e.consumerInfo(t, "erp")
	if updated.Config.MaxDeliver != 5 {
		t.Errorf("erp MaxDeliver = %d, want 5", updated.Config.MaxDeliver)
	}
	if !updated.Created.Equal(erp.Created) || updated.NumPending != 1 {
		t.Errorf("erp consumer was recreated (created %v -> %v, pending %d), want updated in place",
			erp.Created, updated.Created, updated.NumPending)
	}
	for _, name := range []string{"someone-else", natsx.ConsumerAuditorEvents} {
		if _, err := e.js.Consumer(ctx, natsx.StreamEvents, name); err != nil {
			t.Errorf("consumer %s not owned by the dispatcher: %v", name, err)
		}
	}

	// Provisioning the same configuration again changes nothing.
	provision(destinationFor("erp", "https://erp.example/hooks", 5))
	if again := e.consumerInfo(t, "erp"); !again.Created.Equal(erp.Created) || again.NumPending != 1 {
		t.Errorf("re-provisioning changed the consumer: %+v", again)
	}
}

func TestConsumerConfigCapsBackoffAtMaxAttempts(t *testing.T) {
	t.Parallel()
	d := destinationFor("erp", "https://erp.example", 2)
	d.Retry.Backoff = []config.Duration{config.Duration(step1), config.Duration(step2), config.Duration(2 * step2)}
	cc := topology.DestinationConsumer(d).Config
	if len(cc.BackOff) > cc.MaxDeliver {
		t.Errorf("BackOff has %d steps for MaxDeliver %d; JetStream refuses that", len(cc.BackOff), cc.MaxDeliver)
	}
	if cc.AckWait != cc.BackOff[0] {
		t.Errorf("AckWait %v != BackOff[0] %v", cc.AckWait, cc.BackOff[0])
	}
	// And JetStream accepts it.
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.js.CreateOrUpdateConsumer(ctx, natsx.StreamEvents, cc); err != nil {
		t.Errorf("JetStream refused the consumer: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	if _, err := New(nil, nil, Config{}); err == nil {
		t.Error("New without a logger succeeded")
	}
	if _, err := New(nil, nil, Config{Logger: natstest.Logger(t), FetchWait: time.Millisecond}); err == nil {
		t.Error("New with a 1ms FetchWait succeeded")
	}
}

func TestShutdownReturnsPromptlyWhileRetrying(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusServiceUnavailable})
	dest := destinationFor("erp", p.URL, 5)
	d, err := New(e.js, auditlog.NewEmitter(e.js, "dispatcher"), Config{
		Destinations: []config.Destination{dest}, Logger: natstest.Logger(t), FetchWait: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := d.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	e.publish(t, orderEvent("ev-shutdown"))
	waitfor.True(t, "first attempt", func() bool { return len(p.received()) >= 1 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil after cancel", err)
	}
	// The event is still owed to the partner: JetStream keeps it.
	if info := e.consumerInfo(t, "erp"); info.NumAckPending+int(info.NumPending) != 1 {
		t.Errorf("after shutdown the event is neither pending nor awaiting ack: %+v", info)
	}
}
