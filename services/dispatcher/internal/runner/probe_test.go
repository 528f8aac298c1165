package runner

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/dispatcher/internal/breaker"
)

// inProgressCounter counts the InProgress acknowledgements (+WPI) sent for
// one delivery, as the server receives them on its reply subject.
func inProgressCounter(t *testing.T, e *testEnv, msg jetstream.Msg) *atomic.Int64 {
	t.Helper()
	nc, _ := e.nats.Connect(t)
	var n atomic.Int64
	if _, err := nc.Subscribe(msg.Reply(), func(m *nats.Msg) {
		if string(m.Data) == "+WPI" {
			n.Add(1)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return &n
}

// competingReplica pulls from the destination's consumer on a connection
// of its own until stop is called, and reports how many events it was
// handed: any is an event the server thought lost.
func competingReplica(t *testing.T, e *testEnv, destination string) (stop func() int) {
	t.Helper()
	_, js := e.nats.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := js.Consumer(ctx, natsx.StreamEvents, ConsumerName(destination))
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Int64
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			default:
			}
			batch, err := cons.Fetch(1, jetstream.FetchMaxWait(100*time.Millisecond))
			if err != nil {
				continue
			}
			for range batch.Messages() {
				got.Add(1)
			}
		}
	}()
	return func() int {
		close(done)
		<-finished
		return int(got.Load())
	}
}

// An event fetched just before the breaker opened is held, not sent, for
// as long as the breaker is open, however many ack waits that takes: the
// holding replica keeps it alive with InProgress, so the server hands it
// to no other replica and counts no further delivery. When the cooldown
// ends, the held event becomes this replica's half-open probe: one
// request, as attempt 1, which closes the breaker.
func TestHeldEventIsKeptAliveAndBecomesTheProbe(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusOK})
	// An ack wait (step 1) of 2s, InProgress every ~1.8s: the shared
	// schedule's 600ms left only 125ms between a keep-alive and the
	// redelivery, which a loaded CI machine's scheduler could miss.
	dc := breakerDestination("erp", p.URL)
	dc.Retry.Backoff = []config.Duration{config.Duration(2 * time.Second), config.Duration(3 * time.Second)}
	checkDestination(t, dc)
	ctx, dest, seq, msg := e.heldByOpenBreaker(t, dc)
	// As if the pause had not taken (PauseConsumer failing is logged, not
	// fatal): only the keep-alive stops the server from handing the held
	// event to the replica pulling next to this one.
	if _, err := e.js.ResumeConsumer(ctx, natsx.StreamEvents, ConsumerName("erp")); err != nil {
		t.Fatal(err)
	}
	keepAlives := inProgressCounter(t, e, msg)
	stopCompetitor := competingReplica(t, e, "erp")

	done := make(chan struct{})
	go func() {
		defer close(done)
		dest.handle(ctx, ctx, msg, false)
	}()
	// Four keep-alives (one as the hold starts, then one per interval):
	// held for more than two ack waits.
	waitfor.True(t, "four InProgress acknowledgements", func() bool { return keepAlives.Load() >= 4 })
	if n := len(p.received()); n != 0 {
		t.Fatalf("the partner got %d requests while the breaker was open", n)
	}
	// The cooldown ends.
	if err := dest.breaker.Update(ctx, func(c *breaker.Circuit, now time.Time) string {
		c.OpenUntil = now
		return ""
	}); err != nil {
		t.Fatal(err)
	}
	<-done
	if n := stopCompetitor(); n != 0 {
		t.Errorf("another replica was handed the held event %d times: its ack wait ran out", n)
	}

	hits := p.received()
	if len(hits) != 1 || hits[0].header.Get("Switchyard-Attempt") != "1" {
		t.Fatalf("partner requests = %d, want one, attempt 1", len(hits))
	}
	_, as := attempts(t, e.js, "erp")
	if len(as) != 1 || !as[0].Probe || as[0].Attempt != 1 || as[0].Outcome != switchyardv1.Outcome_OUTCOME_DELIVERED || !as[0].Final {
		t.Errorf("attempt records = %v, want the held event's delivery as the probe", as)
	}
	info := e.consumerInfo(t, "erp")
	if info.Delivered.Consumer != 1 || info.NumRedelivered != 0 || info.NumAckPending != 0 || info.AckFloor.Stream != seq {
		t.Errorf("consumer delivered %d times (%d redelivered, %d ack pending, ack floor %d), want once and acked at %d",
			info.Delivered.Consumer, info.NumRedelivered, info.NumAckPending, info.AckFloor.Stream, seq)
	}
	cs, _ := circuitRecords(t, e, "erp")
	if len(cs) != 3 || cs[0].To != open || cs[1].To != halfOpen || cs[2].To != closed || cs[2].Reason != "the probe attempt succeeded" {
		t.Errorf("circuit changes = %v, want open, half-open, closed by the probe", cs)
	}
	if c, _ := dest.breaker.View(); c.State != closed || dest.probing.Load() {
		t.Errorf("after the probe: circuit %v, probing %v", c.State, dest.probing.Load())
	}
}

// putCircuit writes a destination's shared circuit state as another
// replica would have left it.
func putCircuit(t *testing.T, e *testEnv, destination string, c breaker.Circuit) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, breaker.KVBucket)
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, destination, data); err != nil {
		t.Fatal(err)
	}
}

// readCircuit reads a destination's shared circuit state.
func readCircuit(t *testing.T, e *testEnv, destination string) breaker.Circuit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := e.js.KeyValue(ctx, breaker.KVBucket)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(ctx, destination)
	if err != nil {
		t.Fatal(err)
	}
	c, err := breaker.Decode(entry.Value())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A replica that took the half-open probe and stopped (it died without
// renewing its lease) does not strand the breaker: once its lease has run
// out, another replica takes the probe over, without a state change (no
// second half-open record), and its probe closes the breaker. It does not
// probe while the first replica's lease still runs.
func TestProbeLeaseIsTakenOverWhenItsReplicaStopped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusOK})
	d := breakerDestination("erp", p.URL)
	e.provision(t, d)
	// Milliseconds: the record's time is read back from the shared state.
	wentHalfOpen := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	leaseEnds := time.Now().Add(time.Second)
	putCircuit(t, e, "erp", breaker.Circuit{
		State: halfOpen, Opens: 1, Prober: "replica-a", ProbeUntil: leaseEnds,
		Reason: "cooldown over; one probe attempt", LastError: "HTTP 503 Service Unavailable",
		Change: &breaker.Change{From: open, At: wentHalfOpen},
	})
	seq := e.publish(t, orderEvent("ev-probe"))

	e.run(t, e.js, func(c *Config) { c.Instance = "replica-b" }, d)
	waitfor.True(t, "the breaker closed", func() bool {
		cs, _ := circuitRecords(t, e, "erp")
		return countTo(cs, closed) == 1
	})
	hits := p.received()
	if len(hits) != 1 {
		t.Fatalf("partner requests = %d, want the one probe", len(hits))
	}
	if hits[0].at.Before(leaseEnds) {
		t.Errorf("probed at %v, before replica-a's lease ran out at %v", hits[0].at, leaseEnds)
	}
	_, as := attempts(t, e.js, "erp")
	if len(as) != 1 || !as[0].Probe || as[0].StreamSeq != seq || as[0].Outcome != switchyardv1.Outcome_OUTCOME_DELIVERED {
		t.Errorf("attempt records = %v, want one probe of seq %d", as, seq)
	}
	// The half-open state is recorded again (each backlog interval), as
	// the transition replica-a made; the takeover is no transition of its
	// own.
	cs, at := circuitRecords(t, e, "erp")
	for i, c := range cs {
		switch {
		case c.To == halfOpen && !at[i].Equal(wentHalfOpen):
			t.Errorf("half-open recorded at %v, want only the transition of %v recorded again", at[i], wentHalfOpen)
		case c.To != halfOpen && (c.From != halfOpen || c.To != closed || c.Reason != "the probe attempt succeeded"):
			t.Errorf("circuit change %v, want only the probe closing the breaker", c)
		}
	}
	if c := readCircuit(t, e, "erp"); c.State != closed || c.Prober != "" {
		t.Errorf("shared circuit after the probe = %+v", c)
	}
}

// The half-open probe fetch finding nothing: if nothing at all is waiting
// the breaker closes (there is nothing to protect, nothing to probe with);
// if an event is waiting for its retry it stays half-open until that retry
// is due, and the retry is the probe.
func TestProbeThatFindsNoEvent(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		// waiting leaves an event unacknowledged, its retry due 1.5s after
		// the breaker's cooldown ended.
		waiting    bool
		wantReason string
		wantHits   int
	}{
		{"nothing waiting", false, "no event left to probe with", 0},
		{"a retry not yet due", true, "the probe attempt succeeded", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			p := newPartner(t, reply{status: http.StatusOK})
			d := breakerDestination("erp", p.URL)
			d.Retry.Backoff = []config.Duration{config.Duration(1500 * time.Millisecond)}
			e.provision(t, d)
			var seq uint64
			if tt.waiting {
				seq = e.publish(t, orderEvent("ev-waiting"))
				e.takeOne(t, "erp") // attempted by a replica before the breaker opened
			}
			opened := time.Now().Add(-time.Second).Truncate(time.Millisecond)
			putCircuit(t, e, "erp", breaker.Circuit{
				State: open, Opens: 1, OpenUntil: time.Now(), Consecutive: 3,
				Reason: "3 retryable failures in a row", LastError: "HTTP 503 Service Unavailable",
				Change: &breaker.Change{From: closed, At: opened, Consecutive: 3},
			})

			e.run(t, e.js, func(c *Config) { c.Instance = "replica-b" }, d)
			waitfor.True(t, "the breaker closed", func() bool {
				cs, _ := circuitRecords(t, e, "erp")
				return countTo(cs, closed) == 1
			})
			// The opening may be recorded again (the backlog monitor's
			// first round); what this replica did is half-open, then
			// closed.
			all, at := circuitRecords(t, e, "erp")
			var cs []*switchyardv1.CircuitChanged
			for i, c := range all {
				if c.To != open || !at[i].Equal(opened) {
					cs = append(cs, c)
				}
			}
			if len(cs) != 2 || cs[0].From != open || cs[0].To != halfOpen || cs[1].To != closed || !strings.Contains(cs[1].Reason, tt.wantReason) {
				t.Fatalf("circuit changes = %v, want half-open, then closed because %q", all, tt.wantReason)
			}
			hits := p.received()
			if len(hits) != tt.wantHits {
				t.Fatalf("partner requests = %d, want %d", len(hits), tt.wantHits)
			}
			if tt.waiting {
				_, as := attempts(t, e.js, "erp")
				if len(as) != 1 || !as[0].Probe || as[0].Attempt != 2 || as[0].StreamSeq != seq {
					t.Errorf("attempt records = %v, want the waiting event's retry (attempt 2) as the probe", as)
				}
			}
			// Closed means delivering: a new event goes out at once.
			e.publish(t, orderEvent("ev-after"))
			waitfor.True(t, "the next event delivered", func() bool { return p.countByID()["ev-after"] == 1 })
			if c := readCircuit(t, e, "erp"); c.State != closed {
				t.Errorf("shared circuit = %+v, want closed", c)
			}
		})
	}
}
