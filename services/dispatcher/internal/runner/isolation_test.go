package runner

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// deliveredIDs counts the partner's 2xx answers per Idempotency-Key; for
// partners that always answer 2xx, that is every request.
func (p *partner) countByID() map[string]int {
	out := map[string]int{}
	for _, h := range p.received() {
		out[h.header.Get("Idempotency-Key")]++
	}
	return out
}

func publishN(t *testing.T, e *testEnv, prefix string, n int) {
	t.Helper()
	for i := range n {
		e.publish(t, orderEvent(fmt.Sprintf("%s-%03d", prefix, i)))
	}
}

// A partner that hangs holds only its own destination's workers: another
// destination on the same events receives every one of them while the
// hanging partner still has its first requests open.
//
// Progress is compared, not timed: the hanging requests last until the
// test ends (the destination's timeout is far beyond the test's wait), so
// when the fast partner has every event the hanging one must still have
// exactly its destination's concurrency in flight, however slow the
// machine.
func TestHangingPartnerDoesNotDelayAnother(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	release := make(chan struct{})
	hanging := newPartner(t, reply{hang: true, release: release})
	t.Cleanup(func() { close(release) })
	fast := newPartner(t, reply{status: http.StatusOK})

	slow := destinationFor("slow", hanging.URL, 3)
	slow.Timeout = config.Duration(2 * time.Minute)
	slow.Retry.Backoff = []config.Duration{config.Duration(3 * time.Minute)}
	slow.Concurrency = 2
	// A short grace: the hanging requests are cut when the test ends.
	e.run(t, e.js, func(c *Config) { c.ShutdownGrace = 100 * time.Millisecond }, slow, destinationFor("fast", fast.URL, 3))

	const n = 200
	start := time.Now()
	publishN(t, e, "ev", n)
	waitfor.True(t, "the fast partner received every event", func() bool { return len(fast.received()) >= n })
	took := time.Since(start)
	t.Logf("fast partner: %d events in %v (%.0f/s) while the other partner hangs", n, took, n/took.Seconds())

	// The hanging partner holds exactly its destination's two workers: it
	// has them (possibly only now, on a loaded machine), and never more,
	// since neither request can have ended.
	waitfor.True(t, "the hanging partner holds both workers", func() bool { return len(hanging.received()) >= slow.Concurrency })
	if got := len(hanging.received()); got != slow.Concurrency {
		t.Errorf("hanging partner has %d requests, want its destination's concurrency %d", got, slow.Concurrency)
	}
	for id, c := range fast.countByID() {
		if c != 1 {
			t.Errorf("fast partner got %s %d times", id, c)
		}
	}
	e.waitSettled(t, "fast", n)
}

// A destination where a steady share of events keeps failing goes on
// delivering the healthy ones, once each, while the failing ones wait for
// their retries pending on the consumer (not on a worker).
func TestFailingShareDoesNotHoldUpHealthyEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newAnsweringPartner(t, func(h hit) reply {
		if bytes.Contains(h.body, []byte("bad")) {
			return reply{status: http.StatusServiceUnavailable}
		}
		return reply{status: http.StatusOK}
	})
	d := destinationFor("erp", p.URL, 2)
	const step = 4 * time.Second
	d.Retry.Backoff = []config.Duration{config.Duration(step)}
	d.Concurrency = 4
	d.Breaker.Disabled = true // a fifth of the events failing is not a partner outage
	e.start(t, d)

	const n, everyNth = 150, 5
	bad := 0
	start := time.Now()
	for i := range n {
		id := fmt.Sprintf("good-%03d", i)
		if i%everyNth == 0 {
			id = fmt.Sprintf("bad-%03d", i)
			bad++
		}
		e.publish(t, orderEvent(id))
	}
	good := n - bad
	waitfor.True(t, "every healthy event delivered", func() bool {
		c := 0
		for id := range p.countByID() {
			if strings.HasPrefix(id, "good-") {
				c++
			}
		}
		return c == good
	})
	took := time.Since(start)
	t.Logf("%d healthy events delivered in %v (%.0f/s) beside %d failing ones", good, took, float64(good)/took.Seconds(), bad)

	counts := p.countByID()
	retried := 0
	for id, c := range counts {
		switch {
		case strings.HasPrefix(id, "good-") && c != 1:
			t.Errorf("%s attempted %d times, want once", id, c)
		case strings.HasPrefix(id, "bad-") && c > 1:
			retried++
		}
	}
	// The healthy events were all delivered before any failing one was due
	// again: the failing ones wait for their retries pending on the
	// consumer, holding no worker. (On a machine so loaded that the
	// healthy events took longer than the retry step, that comparison
	// says nothing, and the log says so.)
	if took < step {
		if retried > 0 {
			t.Errorf("%d failing events were retried before their %v backoff step", retried, step)
		}
		if info := e.consumerInfo(t, "erp"); info.NumAckPending < bad-retried {
			t.Errorf("num_ack_pending = %d, want the %d failing events waiting for their retry", info.NumAckPending, bad)
		}
	} else {
		t.Logf("healthy events took %v, longer than the %v retry step: the no-early-retry check is not meaningful", took, step)
	}
	waitfor.True(t, "failing events dead-lettered after their retry", func() bool {
		return len(natstest.DeadLetters(t, e.js, "erp")) == bad
	})
}

// A consumer that fills max_ack_pending is reported: the metric and a
// BacklogReport audit record with the counts, the oldest event's age and
// the full flag, for the notifier's BacklogGrowing rule.
func TestFullConsumerIsReported(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusInternalServerError})
	d := destinationFor("erp", p.URL, 3)
	d.Retry.Backoff = []config.Duration{config.Duration(time.Minute)}
	d.Concurrency = 2
	d.MaxAckPending = 4
	d.Breaker.Disabled = true
	r := e.run(t, e.js, func(c *Config) { c.BacklogInterval = 100 * time.Millisecond }, d)

	publishN(t, e, "ev", 7)
	e.waitAttempts(t, "erp", 4)

	rec := waitfor.Value(t, "a BacklogReport with full set", func() (*switchyardv1.BacklogReport, bool) {
		recs := natstest.AuditRecords(t, e.js, "audit."+auditlog.KindBacklog+".erp")
		for _, rec := range recs {
			if b := rec.GetBacklog(); b.GetFull() && b.GetNumPending() == 3 {
				return b, true
			}
		}
		return nil, false
	})
	if rec.NumAckPending != 4 || rec.MaxAckPending != 4 || rec.OldestPendingAge.AsDuration() <= 0 || rec.Paused {
		t.Errorf("backlog report = %v", rec)
	}
	if _, as := attempts(t, e.js, "erp"); len(as) != 4 {
		t.Errorf("%d attempts with max_ack_pending 4 and a 1m retry step, want 4", len(as))
	}
	m := r.d.metrics
	if got := testutil.ToFloat64(m.backlogFull.WithLabelValues("erp")); got != 1 {
		t.Errorf("switchyard_dispatcher_consumer_full = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.pending.WithLabelValues("erp")); got != 3 {
		t.Errorf("switchyard_dispatcher_consumer_pending = %v, want 3", got)
	}
}

// An ordered destination gets its events in stream order, one at a time:
// a failing event holds back the ones after it until it is delivered, on
// two replicas as on one.
func TestOrderedDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	failures := 0
	// answer runs under the partner's lock.
	p := newAnsweringPartner(t, func(h hit) reply {
		if bytes.Contains(h.body, []byte("ev-002")) && failures < 2 {
			failures++
			return reply{status: http.StatusServiceUnavailable}
		}
		return reply{status: http.StatusOK}
	})
	d := destinationFor("ledger", p.URL, 5)
	d.Ordered = true
	d.Concurrency = 1
	_, js2 := e.nats.Connect(t)
	e.start(t, d)
	e.run(t, js2, nil, d)

	publishN(t, e, "ev", 6)
	e.waitSettled(t, "ledger", 8)

	var got []string
	for _, h := range p.received() {
		got = append(got, h.header.Get("Idempotency-Key"))
	}
	want := []string{"ev-000", "ev-001", "ev-002", "ev-002", "ev-002", "ev-003", "ev-004", "ev-005"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("partner received %v, want %v", got, want)
	}
	if info := e.consumerInfo(t, "ledger"); info.Config.MaxAckPending != 1 {
		t.Errorf("ordered consumer max_ack_pending = %d, want 1", info.Config.MaxAckPending)
	}
}

// The rate limit spaces requests: tokens are taken before fetching, so the
// events wait in the stream, not in the dispatcher.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusOK})
	d := destinationFor("erp", p.URL, 3)
	d.RateLimit = config.RateLimit{PerSecond: 20, Burst: 2}
	e.start(t, d)

	const n = 22
	start := time.Now()
	publishN(t, e, "ev", n)
	e.waitSettled(t, "erp", n)
	hits := p.received()
	// At most two tokens (the burst) were ready when the events arrived,
	// then one every 50ms: the last request at least (n-2) x 50ms after.
	if span, want := hits[n-1].at.Sub(start), time.Duration(n-2)*50*time.Millisecond; span < want {
		t.Errorf("%d requests within %v at 20/s burst 2, want at least %v", n, span, want)
	}
}

// Fan-out: an event that matches three destinations is delivered to each
// independently; the failing one dead-letters without touching the others.
func TestFanOutToThreeWithOneFailing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := newPartner(t, reply{status: http.StatusOK})
	b := newPartner(t, reply{status: http.StatusAccepted})
	failing := newPartner(t, reply{status: http.StatusBadGateway})
	da, db := destinationFor("a", a.URL, 2), destinationFor("b", b.URL, 2)
	dc := destinationFor("c", failing.URL, 2)
	dc.Breaker.Disabled = true // its own tests show the breaker; here c just fails
	da.Subjects = []string{"events.>"}
	db.Subjects = []string{"events.order.*"}
	e.start(t, da, db, dc)

	const n = 10
	publishN(t, e, "ev", n)
	e.waitSettled(t, "a", n)
	e.waitSettled(t, "b", n)
	e.waitSettled(t, "c", 2*n)
	for name, p := range map[string]*partner{"a": a, "b": b} {
		counts := p.countByID()
		if len(counts) != n {
			t.Errorf("%s got %d distinct events, want %d", name, len(counts), n)
		}
		for id, c := range counts {
			if c != 1 {
				t.Errorf("%s got %s %d times", name, id, c)
			}
		}
		if dls := natstest.DeadLetters(t, e.js, name); len(dls) != 0 {
			t.Errorf("%s has %d dead letters", name, len(dls))
		}
	}
	if dls := natstest.DeadLetters(t, e.js, "c"); len(dls) != n {
		t.Errorf("c has %d dead letters, want %d", len(dls), n)
	}
}
