package runner

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/dispatcher/internal/breaker"
)

var (
	closed   = switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED
	open     = switchyardv1.CircuitState_CIRCUIT_STATE_OPEN
	halfOpen = switchyardv1.CircuitState_CIRCUIT_STATE_HALF_OPEN
)

// circuitRecords returns the destination's CircuitChanged audit records,
// in order, with their times.
func circuitRecords(t *testing.T, e *testEnv, destination string) ([]*switchyardv1.CircuitChanged, []time.Time) {
	t.Helper()
	var cs []*switchyardv1.CircuitChanged
	var at []time.Time
	for _, rec := range natstest.AuditRecords(t, e.js, "audit."+auditlog.KindCircuit+"."+destination) {
		cs = append(cs, rec.GetCircuitChanged())
		at = append(at, rec.GetTime().AsTime())
	}
	return cs, at
}

func countTo(cs []*switchyardv1.CircuitChanged, to switchyardv1.CircuitState) int {
	n := 0
	for _, c := range cs {
		if c.To == to {
			n++
		}
	}
	return n
}

// pauseAdvisories collects the server's consumer pause advisories for a
// destination: proof that the consumer itself was paused.
type pauseAdvisories struct {
	mu   sync.Mutex
	seen []struct {
		Paused     bool      `json:"paused"`
		PauseUntil time.Time `json:"pause_until"`
	}
}

func watchPauses(t *testing.T, e *testEnv, destination string) *pauseAdvisories {
	t.Helper()
	nc, _ := e.nats.Connect(t)
	pa := &pauseAdvisories{}
	_, err := nc.Subscribe("$JS.EVENT.ADVISORY.CONSUMER.PAUSE.EVENTS."+ConsumerName(destination), func(m *nats.Msg) {
		pa.mu.Lock()
		defer pa.mu.Unlock()
		pa.seen = append(pa.seen, struct {
			Paused     bool      `json:"paused"`
			PauseUntil time.Time `json:"pause_until"`
		}{})
		_ = json.Unmarshal(m.Data, &pa.seen[len(pa.seen)-1])
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return pa
}

func (pa *pauseAdvisories) paused() int {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	n := 0
	for _, s := range pa.seen {
		if s.Paused {
			n++
		}
	}
	return n
}

func breakerDestination(name, url string) config.Destination {
	d := destinationFor(name, url, 6)
	d.Concurrency = 1
	d.Breaker = config.Breaker{
		ConsecutiveFailures: 3, FailureRatio: 1, MinRequests: 1000,
		Window: config.Duration(time.Minute), Cooldown: config.Duration(time.Second), MaxCooldown: config.Duration(2 * time.Second),
	}
	return d
}

// A partner down for a while trips the breaker: the consumer is paused and
// no attempt is made while it is open; after the cooldown one probe goes
// out; when the partner is back the breaker closes and every event is
// delivered. Nothing is dead-lettered: the events waited instead of
// burning their attempts.
func TestBreakerOpensPausesAndRecovers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var down atomic.Bool
	down.Store(true)
	p := newAnsweringPartner(t, func(hit) reply {
		if down.Load() {
			return reply{status: http.StatusServiceUnavailable, body: "maintenance"}
		}
		return reply{status: http.StatusOK}
	})
	pauses := watchPauses(t, e, "erp")
	d := breakerDestination("erp", p.URL)
	e.start(t, d)

	const n = 10
	publishN(t, e, "ev", n)
	// Opened, probed, opened again after a failed probe: the partner is
	// still down. Then it comes back.
	waitfor.True(t, "the breaker opened twice", func() bool {
		cs, _ := circuitRecords(t, e, "erp")
		return countTo(cs, open) >= 2
	})
	down.Store(false)
	waitfor.True(t, "every event delivered", func() bool {
		_, as := attempts(t, e.js, "erp")
		delivered := map[string]bool{}
		for _, a := range as {
			if a.Outcome == switchyardv1.Outcome_OUTCOME_DELIVERED {
				delivered[a.EventId] = true
			}
		}
		return len(delivered) == n
	})
	e.waitSettled(t, "erp", n)

	if dls := natstest.DeadLetters(t, e.js, "erp"); len(dls) != 0 {
		t.Errorf("%d dead letters; the partner came back within the retry horizon", len(dls))
	}
	cs, at := circuitRecords(t, e, "erp")
	if len(cs) < 5 || cs[0].From != closed || cs[0].To != open || cs[len(cs)-1].To != closed {
		t.Fatalf("circuit changes = %v", cs)
	}
	if !strings.Contains(cs[0].Reason, "3 retryable failures in a row") || cs[0].LastError != "HTTP 503 Service Unavailable" ||
		cs[0].ConsecutiveFailures != 3 || cs[0].OpenUntil == nil {
		t.Errorf("first opening = %v", cs[0])
	}
	// No request reached the partner while the breaker was open: between
	// each opening and the next half-open.
	hits := p.received()
	for i, c := range cs {
		if c.To != open || i+1 >= len(cs) {
			continue
		}
		for _, h := range hits {
			if h.at.After(at[i]) && h.at.Before(at[i+1]) {
				t.Errorf("a request at %v while the breaker was open (%v to %v)", h.at, at[i], at[i+1])
			}
		}
	}
	// Every half-open let exactly one probe through.
	_, as := attempts(t, e.js, "erp")
	probes := 0
	for _, a := range as {
		if a.Probe {
			probes++
		}
	}
	if halfOpens := countTo(cs, halfOpen); probes != halfOpens {
		t.Errorf("%d probe attempts for %d half-open states, want one each", probes, halfOpens)
	}
	if n := pauses.paused(); n < 2 {
		t.Errorf("%d pause advisories, want the consumer paused at each of the %d openings", n, countTo(cs, open))
	}
	t.Logf("%d requests in all for %d events (%d circuit changes)", len(hits), n, len(cs))
}

// The breaker state is shared by the replicas: two dispatchers that each
// saw two failures open it together at four in a row, and one replica
// makes each transition (one record each).
func TestBreakerSharedByReplicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var down atomic.Bool
	down.Store(true)
	p := newAnsweringPartner(t, func(hit) reply {
		if down.Load() {
			// Retry-After keeps the failed events away for the whole test.
			return reply{status: http.StatusServiceUnavailable, header: map[string]string{"Retry-After": "120"}}
		}
		return reply{status: http.StatusOK}
	})
	d := destinationFor("erp", p.URL, 3)
	d.Concurrency = 1
	d.Breaker = config.Breaker{
		ConsecutiveFailures: 4, FailureRatio: 1, MinRequests: 1000,
		Window: config.Duration(time.Minute), Cooldown: config.Duration(time.Second), MaxCooldown: config.Duration(time.Second),
	}
	_, jsA := e.nats.Connect(t)
	_, jsB := e.nats.Connect(t)

	a := e.run(t, jsA, func(c *Config) { c.Instance = "replica-a" }, d)
	publishN(t, e, "a", 2)
	waitfor.True(t, "replica a made two attempts", func() bool { return len(p.received()) == 2 })
	e.waitAttempts(t, "erp", 2)
	a.stop(t)
	if cs, _ := circuitRecords(t, e, "erp"); len(cs) != 0 {
		t.Fatalf("the breaker changed after two failures: %v", cs)
	}

	e.run(t, jsB, func(c *Config) { c.Instance = "replica-b" }, d)
	publishN(t, e, "b", 2)
	waitfor.True(t, "the breaker opened", func() bool {
		cs, _ := circuitRecords(t, e, "erp")
		return countTo(cs, open) == 1
	})
	if n := len(p.received()); n != 4 {
		t.Errorf("%d requests before the breaker opened, want 4 (two per replica)", n)
	}
	cs, _ := circuitRecords(t, e, "erp")
	if !strings.Contains(cs[0].Reason, "4 retryable failures in a row") {
		t.Errorf("opened because %q, want four in a row across the replicas", cs[0].Reason)
	}
	if info := e.consumerInfo(t, "erp"); !info.Paused {
		t.Errorf("consumer not paused while the breaker is open")
	}

	// Both replicas run; the partner is back. The next event is the probe;
	// then both deliver.
	e.run(t, jsA, func(c *Config) { c.Instance = "replica-a2" }, d)
	down.Store(false)
	before := len(p.received())
	publishN(t, e, "c", 1)
	waitfor.True(t, "the breaker closed", func() bool {
		cs, _ := circuitRecords(t, e, "erp")
		return countTo(cs, closed) == 1
	})
	publishN(t, e, "d", 20)
	waitfor.True(t, "the events after recovery delivered", func() bool { return len(p.received()) >= before+21 })
	cs, _ = circuitRecords(t, e, "erp")
	if countTo(cs, open) != 1 || countTo(cs, halfOpen) != 1 || countTo(cs, closed) != 1 {
		t.Errorf("circuit changes = %v, want one each: a transition is recorded by one replica", cs)
	}
	for id, c := range p.countByID() {
		if (strings.HasPrefix(id, "c-") || strings.HasPrefix(id, "d-")) && c != 1 {
			t.Errorf("%s delivered %d times", id, c)
		}
	}
}

// Permanent failures mean the partner is up: they never open the breaker.
func TestBreakerIgnoresPermanentFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusBadRequest, body: "bad payload"})
	d := breakerDestination("erp", p.URL)
	d.Concurrency = 4
	e.start(t, d)
	publishN(t, e, "ev", 12)
	waitfor.True(t, "every event dead-lettered", func() bool { return len(natstest.DeadLetters(t, e.js, "erp")) == 12 })
	if cs, _ := circuitRecords(t, e, "erp"); len(cs) != 0 {
		t.Errorf("permanent failures changed the breaker: %v", cs)
	}
}

// waitAttempts waits until n attempt records of the destination are stored.
func (e *testEnv) waitAttempts(t *testing.T, destination string, n int) {
	t.Helper()
	waitfor.True(t, "attempt records", func() bool {
		_, as := attempts(t, e.js, destination)
		return len(as) >= n
	})
}

// A circuit change whose audit record was lost is recorded again, with the
// same id, until it is stored; and every backlog report carries the
// breaker's state, each interval while it is not closed, also when
// nothing is waiting: the notifier's PartnerDown rule can catch up from
// either.
func TestCircuitStateIsRecordedAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusServiceUnavailable})
	d := destinationFor("erp", p.URL, 1) // each failure is final: nothing stays pending
	d.Breaker = config.Breaker{
		ConsecutiveFailures: 2, FailureRatio: 1, MinRequests: 1000,
		Window: config.Duration(time.Minute), Cooldown: config.Duration(time.Minute), MaxCooldown: config.Duration(time.Minute),
	}
	restore := refuseAudit(t, e, auditlog.KindCircuit)
	e.run(t, e.js, func(c *Config) { c.BacklogInterval = 100 * time.Millisecond }, d)

	publishN(t, e, "ev", 2)
	waitfor.True(t, "the breaker open and the consumer paused", func() bool { return e.consumerInfo(t, "erp").Paused })
	reports := func() map[string]bool {
		intervals := map[string]bool{}
		for _, rec := range natstest.AuditRecords(t, e.js, "audit."+auditlog.KindBacklog+".erp") {
			b := rec.GetBacklog()
			if b.GetCircuit() == open && b.GetNumPending() == 0 && b.GetNumAckPending() == 0 {
				intervals[rec.Id] = true
			}
		}
		return intervals
	}
	waitfor.True(t, "backlog reports of an open breaker with nothing waiting, interval after interval", func() bool { return len(reports()) >= 3 })
	if cs, _ := circuitRecords(t, e, "erp"); len(cs) != 0 {
		t.Fatalf("circuit records while AUDIT refused them: %v", cs)
	}

	restoredAt := time.Now()
	restore()
	waitfor.True(t, "the opening recorded after all", func() bool {
		cs, _ := circuitRecords(t, e, "erp")
		return countTo(cs, open) == 1
	})
	cs, at := circuitRecords(t, e, "erp")
	if len(cs) != 1 || cs[0].From != closed || cs[0].ConsecutiveFailures != 2 || cs[0].OpenUntil == nil ||
		!strings.Contains(cs[0].Reason, "2 retryable failures in a row") || cs[0].LastError != "HTTP 503 Service Unavailable" {
		t.Errorf("circuit records = %v", cs)
	}
	// Recorded with the time of the change, not of the repeat.
	if first := p.received()[0].at; at[0].Before(first) || !at[0].Before(restoredAt) {
		t.Errorf("circuit record time %v, want the opening's: after the first attempt (%v), before AUDIT took the record (%v)", at[0], first, restoredAt)
	}
}

// heldByOpenBreaker provisions a dispatcher (not running) for dc with a
// minute's cooldown, publishes an event, fetches it for dest, and then
// opens dest's breaker: the event was fetched just before the breaker
// opened, and handle will hold it. ctx ends with the test (20 s at most).
func (e *testEnv) heldByOpenBreaker(t *testing.T, dc config.Destination) (ctx context.Context, dest *destination, seq uint64, msg jetstream.Msg) {
	t.Helper()
	dc.Breaker.Cooldown, dc.Breaker.MaxCooldown = config.Duration(time.Minute), config.Duration(time.Minute)
	d, err := New(e.js, auditlog.NewEmitter(e.js, "dispatcher"), Config{Destinations: []config.Destination{dc}, Logger: natstest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	if err := d.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	seq = e.publish(t, orderEvent("ev-held"))
	msg = e.takeOne(t, dc.Name) // fetched while the breaker was closed
	dest = d.dests[0]
	if err := dest.breaker.Update(ctx, func(c *breaker.Circuit, now time.Time) string {
		c.Open(dest.breaker.Policy(), now, "opened by the test")
		return c.Reason
	}); err != nil {
		t.Fatal(err)
	}
	return ctx, dest, seq, msg
}

// A replica shutting down while the breaker holds an event it fetched just
// before the breaker opened: on an earlier delivery it hands the event
// back without an attempt; on the final delivery it makes the attempt
// (handing it back would make it a dead letter the partner never saw).
func TestShutdownWhileTheBreakerHoldsAnEvent(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name        string
		maxAttempts int
		wantHits    int
	}{
		{"earlier delivery", 3, 0},
		{"final delivery", 1, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			p := newPartner(t, reply{status: http.StatusServiceUnavailable})
			dc := breakerDestination("erp", p.URL)
			dc.Retry.MaxAttempts = tt.maxAttempts
			ctx, dest, seq, msg := e.heldByOpenBreaker(t, dc)

			stopping, stop := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				dest.handle(ctx, stopping, msg, false)
			}()
			stop() // shutdown begins while the event is held
			<-done

			if n := len(p.received()); n != tt.wantHits {
				t.Errorf("partner got %d requests, want %d", n, tt.wantHits)
			}
			dls := natstest.DeadLetters(t, e.js, "erp")
			if tt.wantHits == 0 {
				if len(dls) != 0 {
					t.Errorf("dead letters = %v, want none", dls)
				}
				return
			}
			if len(dls) != 1 || dls[0].Reason != switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_ATTEMPTS || dls[0].LastStatusCode != 503 || dls[0].StreamSeq != seq {
				t.Errorf("dead letters = %v, want the final attempt's", dls)
			}
		})
	}
}
