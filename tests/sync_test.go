package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/services/dispatcher"
	"github.com/switchyard/switchyard/services/ingress"
)

// syncKey is the publish API key of the synchronous tests.
const syncKey = "orders-publish-key-0001"

// syncSystem is ingress and dispatcher replicas, each on its own NATS
// connection as separate processes would be, against one NATS server.
type syncSystem struct {
	ns       *natstest.Server
	js       jetstream.JetStream
	ingress  []*httptest.Server
	requests atomic.Int64
}

// startSync runs n ingress and n dispatcher replicas with cfg.
func startSync(t testing.TB, replicas int, cfg config.Config) *syncSystem {
	t.Helper()
	cfg.Ingress.APIKeys = []config.IngressAPIKey{{Name: "orders", Key: syncKey}}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test configuration: %v", err)
	}
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	s := &syncSystem{ns: ns, js: js}
	log := natstest.Logger(t)
	if _, bench := t.(*testing.B); bench {
		log = slog.New(slog.DiscardHandler) // the debug lines would be measured too
	}
	var conns []jetstream.JetStream
	for range 2 * replicas {
		_, c := ns.Connect(t)
		conns = append(conns, c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i := range replicas {
		djs := conns[2*i]
		dc := dispatcher.FromConfig(cfg, log.With("service", fmt.Sprintf("dispatcher-%d", i)), nil)
		dc.Tuning = dispatcher.Tuning{FetchWait: 250 * time.Millisecond, ShutdownGrace: 2 * time.Second}
		disp, err := dispatcher.New(djs, auditlog.NewEmitter(djs, "dispatcher"), dc)
		if err != nil {
			t.Fatal(err)
		}
		if err := disp.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() { _ = disp.Run(ctx) })

		ijs := conns[2*i+1]
		ing, err := ingress.New(ijs, auditlog.NewEmitter(ijs, "ingress"),
			ingress.FromConfig(cfg, log.With("service", fmt.Sprintf("ingress-%d", i)), nil))
		if err != nil {
			t.Fatal(err)
		}
		if err := ing.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ing.Close(context.Background()) })
		srv := httptest.NewServer(ing.Handler())
		t.Cleanup(srv.Close)
		s.ingress = append(s.ingress, srv)
	}
	return s
}

// publish POSTs one event to ingress replica i and decodes the answer.
func (s *syncSystem) publish(t testing.TB, i int, key, query string, header map[string]string) (int, syncAnswer, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.ingress[i].URL+"/v1/events"+query,
		strings.NewReader(`{"type": "order.created", "data": {"order_id": 42}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+syncKey)
	req.Header.Set("Idempotency-Key", key)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("publish %s: %v", key, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var a syncAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("publish %s: %d %s: %v", key, resp.StatusCode, body, err)
	}
	return resp.StatusCode, a, resp.Header
}

// syncAnswer is a synchronous publish's answer.
type syncAnswer struct {
	ID           string `json:"id"`
	Status       string `json:"status"`
	Destinations map[string]struct {
		Status        string            `json:"status"`
		Attempt       int               `json:"attempt"`
		StatusCode    int               `json:"status_code"`
		Error         string            `json:"error"`
		Headers       map[string]string `json:"headers"`
		Body          string            `json:"body"`
		BodyTruncated bool              `json:"body_truncated"`
	} `json:"destinations"`
}

// syncPartner answers each delivery with answer(attempt) after wait
// (closed: no wait); it echoes the event id in its body.
type syncPartner struct {
	*httptest.Server
	mu       sync.Mutex
	attempts map[string]int
	status   func(attempt int) int
	gate     chan struct{}
}

func newSyncPartner(t testing.TB, status func(attempt int) int) *syncPartner {
	t.Helper()
	p := &syncPartner{attempts: map[string]int{}, status: status}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		id := r.Header.Get("Idempotency-Key")
		p.mu.Lock()
		p.attempts[id]++
		n, gate := p.attempts[id], p.gate
		p.mu.Unlock()
		if gate != nil {
			<-gate
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", "/orders/42")
		w.Header().Set("Set-Cookie", "session=partner-secret")
		w.Header().Set("X-Internal-Trace", "keep-me-in")
		w.WriteHeader(p.status(n))
		_, _ = fmt.Fprintf(w, `{"received": %q, "attempt": %d}`, id, n)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *syncPartner) count(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.attempts[id]
}

func syncDestination(name, url, subject string) config.Destination {
	d := destination(name, url, []string{subject}, 3)
	d.Timeout = config.Duration(2 * time.Second)
	d.Retry.Backoff = []config.Duration{config.Duration(3 * time.Second)}
	return d
}

// A partner that answers within the wait: 200 with its status, its body,
// and the headers safe to pass on; one delivery, acked.
func TestSyncFastPartnerAnswersWithinTheWait(t *testing.T) {
	t.Parallel()
	fast := newSyncPartner(t, always(http.StatusCreated))
	s := startSync(t, 1, config.Config{Destinations: []config.Destination{syncDestination("fast", fast.URL, "events.order.>")}})
	code, a, _ := s.publish(t, 0, "o-1", "?wait=5s", nil)
	d := a.Destinations["fast"]
	if code != http.StatusOK || a.Status != "completed" || d.Status != "delivered" || d.StatusCode != 201 || d.Attempt != 1 {
		t.Fatalf("answer %d %+v, want 200 completed, fast delivered 201", code, a)
	}
	if d.Body != `{"received": "orders:o-1", "attempt": 1}` || d.Headers["Location"] != "/orders/42" || d.Headers["Content-Type"] != "application/json" {
		t.Errorf("the partner's answer was not passed on: %+v", d)
	}
	for _, h := range []string{"Set-Cookie", "X-Internal-Trace"} {
		if _, ok := d.Headers[h]; ok {
			t.Errorf("%s passed on to the caller", h)
		}
	}
	waitfor.True(t, "the delivery acked", func() bool { return settledSync(t, s.js, "fast") })
	if n := fast.count("orders:o-1"); n != 1 {
		t.Errorf("the partner got %d requests, want 1", n)
	}

	// The same event again: a duplicate, answered at once without waiting.
	code, a, _ = s.publish(t, 0, "o-1", "?wait=5s", nil)
	if code != http.StatusOK || a.Status != "duplicate" {
		t.Errorf("a duplicate: %d %+v", code, a)
	}
	// Prefer: wait=5 works the same and says it was applied.
	code, a, h := s.publish(t, 0, "o-2", "", map[string]string{"Prefer": "return=minimal, wait=5"})
	if code != http.StatusOK || a.Destinations["fast"].Status != "delivered" || h.Get("Preference-Applied") != "wait=5" {
		t.Errorf("Prefer: wait=5: %d %+v %v", code, a, h)
	}
	// Without a wait, the usual 202.
	if code, a, _ := s.publish(t, 0, "o-3", "", nil); code != http.StatusAccepted || a.Status != "accepted" {
		t.Errorf("no wait: %d %+v", code, a)
	}
	// A wait that is not one.
	if code, _, _ := s.publish(t, 0, "o-4", "?wait=soon", nil); code != http.StatusBadRequest {
		t.Errorf("?wait=soon: %d, want 400", code)
	}
}

// A partner slower than the wait: 202 with the destination pending; the
// delivery goes on and is delivered once, after the answer.
func TestSyncSlowPartnerIsPendingThenDelivered(t *testing.T) {
	t.Parallel()
	slow := newSyncPartner(t, always(http.StatusOK))
	slow.gate = make(chan struct{})
	fast := newSyncPartner(t, always(http.StatusOK))
	s := startSync(t, 1, config.Config{Destinations: []config.Destination{
		syncDestination("slow", slow.URL, "events.order.>"),
		syncDestination("fast", fast.URL, "events.>"),
	}})
	code, a, _ := s.publish(t, 0, "o-1", "?wait=300ms", nil)
	if code != http.StatusAccepted || a.Status != "pending" || a.Destinations["slow"].Status != "pending" || a.Destinations["fast"].Status != "delivered" {
		t.Fatalf("answer %d %+v, want 202 with slow pending and fast delivered", code, a)
	}
	close(slow.gate)
	waitfor.True(t, "the slow delivery acked", func() bool { return settledSync(t, s.js, "slow") })
	if n := slow.count("orders:o-1"); n != 1 {
		t.Errorf("the slow partner got %d requests, want 1: the timeout neither cancelled nor repeated it", n)
	}
}

// A failing partner: its failure is the answer, and the delivery is
// retried on its schedule after it.
func TestSyncFailingPartnerAnswersTheFailureAndIsRetried(t *testing.T) {
	t.Parallel()
	flaky := newSyncPartner(t, func(attempt int) int {
		if attempt == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	broken := newSyncPartner(t, always(http.StatusUnprocessableEntity))
	s := startSync(t, 1, config.Config{Destinations: []config.Destination{
		syncDestination("flaky", flaky.URL, "events.order.>"),
		syncDestination("broken", broken.URL, "events.>"),
	}})
	code, a, _ := s.publish(t, 0, "o-1", "?wait=5s", nil)
	f, b := a.Destinations["flaky"], a.Destinations["broken"]
	if code != http.StatusOK || f.Status != "retrying" || f.StatusCode != 503 || f.Body == "" || b.Status != "failed" || b.StatusCode != 422 {
		t.Fatalf("answer %d %+v, want flaky retrying 503 and broken failed 422", code, a)
	}
	waitfor.True(t, "the second attempt delivered", func() bool { return settledSync(t, s.js, "flaky") })
	if n := flaky.count("orders:o-1"); n != 2 {
		t.Errorf("the flaky partner got %d requests, want 2 (the failure, then the scheduled retry)", n)
	}
	if n := broken.count("orders:o-1"); n != 1 {
		t.Errorf("the broken partner got %d requests, want 1 (permanent)", n)
	}
}

// A destination whose filter leaves the event out gets no attempt, so the
// publish does not wait for it: the answer is complete as soon as the
// destination that does get the event has answered, and does not name the
// other one (before, it was 202 with it pending after the whole wait).
func TestSyncDoesNotWaitForAFilteredOutDestination(t *testing.T) {
	t.Parallel()
	kept := newSyncPartner(t, always(http.StatusOK))
	left := newSyncPartner(t, always(http.StatusOK))
	k := syncDestination("kept", kept.URL, "events.order.>")
	k.Filter = `data.order_id == 42`
	l := syncDestination("left-out", left.URL, "events.order.>")
	l.Filter = `data.order_id != 42`
	s := startSync(t, 1, config.Config{Destinations: []config.Destination{k, l}})
	code, a, _ := s.publish(t, 0, "o-1", "?wait=10s", nil)
	if code != http.StatusOK || a.Status != "completed" || a.Destinations["kept"].Status != "delivered" {
		t.Fatalf("answer %d %+v, want 200 completed with kept delivered", code, a)
	}
	if _, ok := a.Destinations["left-out"]; ok {
		t.Errorf("the answer names the filtered-out destination: %+v", a)
	}
	if n := left.count("orders:o-1"); n != 0 {
		t.Errorf("the filtered-out partner got %d requests", n)
	}
}

// Two ingress and two dispatcher replicas: each answer is its own event's,
// whichever dispatcher delivered it; a destination in mode sync makes the
// publish wait without asking.
func TestSyncAcrossReplicas(t *testing.T) {
	t.Parallel()
	fast := newSyncPartner(t, always(http.StatusOK))
	d := syncDestination("fast", fast.URL, "events.order.>")
	d.Mode = config.ModeSync
	s := startSync(t, 2, config.Config{Destinations: []config.Destination{d}})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			key := fmt.Sprintf("o-%d", i)
			code, a, _ := s.publish(t, i%2, key, "", nil)
			want := fmt.Sprintf(`{"received": "orders:%s", "attempt": 1}`, key)
			if code != http.StatusOK || a.Destinations["fast"].Body != want {
				t.Errorf("publish %s on ingress %d: %d %+v, want its own answer", key, i%2, code, a)
			}
		})
	}
	wg.Wait()
}

func settledSync(t testing.TB, js jetstream.JetStream, destination string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, natsx.StreamEvents, dispatcher.ConsumerName(destination))
	if err != nil {
		t.Fatalf("consumer of %s: %v", destination, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("consumer of %s: %v", destination, err)
	}
	return info.NumPending == 0 && info.NumAckPending == 0
}

// BenchmarkSyncPublish measures a synchronous publish end to end (store,
// dispatch, partner, reply) against BenchmarkDirectCall, the same request
// straight to the partner: their ratio is the latency Switchyard adds.
// Both report the median and the 99th percentile.
func BenchmarkSyncPublish(b *testing.B) {
	fast := newSyncPartner(b, always(http.StatusOK))
	s := startSync(b, 1, config.Config{Destinations: []config.Destination{syncDestination("fast", fast.URL, "events.order.>")}})
	var n atomic.Int64
	var took []time.Duration
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		code, a, _ := s.publish(b, 0, fmt.Sprintf("bench-%d", n.Add(1)), "?wait=5s", nil)
		took = append(took, time.Since(start))
		if code != http.StatusOK || a.Destinations["fast"].Status != "delivered" {
			b.Fatalf("%d %+v", code, a)
		}
	}
	reportPercentiles(b, took)
}

// BenchmarkDirectCall is the partner called directly, as the dispatcher
// calls it.
func BenchmarkDirectCall(b *testing.B) {
	fast := newSyncPartner(b, always(http.StatusOK))
	var n atomic.Int64
	var took []time.Duration
	for b.Loop() {
		start := time.Now()
		req, _ := http.NewRequest(http.MethodPost, fast.URL, strings.NewReader(`{"order_id": 42}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("bench-%d", n.Add(1)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		took = append(took, time.Since(start))
	}
	reportPercentiles(b, took)
}

func reportPercentiles(b *testing.B, took []time.Duration) {
	if len(took) == 0 {
		return
	}
	slices.Sort(took)
	at := func(q float64) float64 { return float64(took[int(q*float64(len(took)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(at(0.5), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}
