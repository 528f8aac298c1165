package runner

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/dispatcher/internal/ids"
	"github.com/switchyard/switchyard/services/dispatcher/internal/reconcile"
)

// provision creates the destinations' consumers without running a
// dispatcher.
func (e *testEnv) provision(t *testing.T, dests ...config.Destination) {
	t.Helper()
	d, err := New(e.js, auditlog.NewEmitter(e.js, "dispatcher"), Config{Destinations: dests, Logger: natstest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Provision(ctx); err != nil {
		t.Fatal(err)
	}
}

// takeOne fetches one event from a destination's consumer as a dispatcher
// would, and returns it unsettled: a dispatcher that dies without a word.
func (e *testEnv) takeOne(t *testing.T, destination string) jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := e.js.Consumer(ctx, natsx.StreamEvents, ConsumerName(destination))
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for msg := range batch.Messages() {
		return msg
	}
	t.Fatalf("no event to take from %s: %v", destination, batch.Error())
	return nil
}

// abandonOnFinalDelivery provisions erp with a single attempt, stores ev
// and takes it as a dispatcher would that then dies without a word: when
// its ack wait runs out, the server raises MAX_DELIVERIES. The partner
// answers 200 and must not be asked.
func (e *testEnv) abandonOnFinalDelivery(t *testing.T, ev events.Event) (config.Destination, *partner, uint64) {
	t.Helper()
	p := newPartner(t, reply{status: http.StatusOK})
	d := destinationFor("erp", p.URL, 1)
	e.provision(t, d)
	seq := e.publish(t, ev)
	e.takeOne(t, "erp")
	return d, p, seq
}

// firstDeadLetter waits for the destination's first dead letter.
func firstDeadLetter(t *testing.T, e *testEnv, destination string) *switchyardv1.DeadLetter {
	t.Helper()
	return waitfor.Value(t, "a dead letter of "+destination, func() (*switchyardv1.DeadLetter, bool) {
		dls := natstest.DeadLetters(t, e.js, destination)
		if len(dls) == 0 {
			return nil, false
		}
		return dls[0], true
	})
}

func checkReconciled(t *testing.T, e *testEnv, dl *switchyardv1.DeadLetter, seq uint64, ev string, payload []byte) {
	t.Helper()
	if dl.Id != ids.DeadLetterID(e.incarnation(t), seq, "erp") || dl.EventId != ev || dl.StreamSeq != seq || dl.Attempts != 1 ||
		dl.Reason != switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_DELIVERIES_ADVISORY ||
		!strings.Contains(dl.LastError, "outcome is unknown") || dl.Subject != "events.order.created" || dl.EventType != "order.created" {
		t.Errorf("reconciled dead letter = %v", dl)
	}
	if string(dl.Payload) != string(payload) {
		t.Errorf("reconciled dead letter payload = %q, want %q", dl.Payload, payload)
	}
}

// A dispatcher that took the final attempt and died without settling it:
// the server raises MAX_DELIVERIES when its ack wait runs out, and the
// reconciler (in any dispatcher replica) turns it into the dead letter.
func TestReconcilerDeadLettersWhenTheDispatcherDiedOnTheFinalAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ev := orderEvent("ev-orphan")
	d, p, seq := e.abandonOnFinalDelivery(t, ev)

	e.start(t, d)
	dl := firstDeadLetter(t, e, "erp")
	checkReconciled(t, e, dl, seq, ev.ID, ev.Data)
	if dl.Headers["Switchyard-Event-Id"] != ev.ID {
		t.Errorf("reconciled dead letter headers = %v", dl.Headers)
	}
	// The audit copy follows the dead letter.
	waitfor.True(t, "the dead letter's audit record", func() bool {
		recs := natstest.AuditRecords(t, e.js, "audit."+auditlog.KindDeadLetter+".erp")
		return len(recs) == 1 && recs[0].Id == "dead_letter:"+dl.Id
	})
	if n := len(p.received()); n != 0 {
		t.Errorf("partner got %d requests: the event had no attempt left", n)
	}
}

// A dispatcher cancelled during the final attempt hands the event back;
// with no attempt left the server raises MAX_DELIVERIES, and the next
// dispatcher's reconciler writes the dead letter.
func TestReconcilerAfterShutdownDuringTheFinalAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{hang: true})
	d := destinationFor("erp", p.URL, 1)
	// The request outlasts the shutdown (the end of the fetch in progress,
	// then the grace) however slow the machine: the shutdown cuts it.
	d.Timeout = config.Duration(5 * time.Second)
	d.Retry.Backoff = []config.Duration{config.Duration(6 * time.Second)}
	a := e.run(t, e.js, func(c *Config) { c.ShutdownGrace = 50 * time.Millisecond }, d)
	ev := orderEvent("ev-cut")
	seq := e.publish(t, ev)
	waitfor.True(t, "the final attempt started", func() bool { return len(p.received()) == 1 })
	a.stop(t)

	_, jsB := e.nats.Connect(t)
	e.run(t, jsB, nil, d)
	dl := firstDeadLetter(t, e, "erp")
	checkReconciled(t, e, dl, seq, ev.ID, ev.Data)
}

// The reconciler never doubles a dead letter, and turns a termination made
// outside the dispatcher into one.
func TestReconcilerIsIdempotentAndCatchesForeignTerminations(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusUnprocessableEntity})
	d := destinationFor("erp", p.URL, 3)
	r := e.start(t, d)

	// The dispatcher dead-letters a permanent failure and terminates it:
	// the MSG_TERMINATED advisory with its reason needs nothing.
	seq := e.publish(t, orderEvent("ev-422"))
	waitfor.True(t, "the termination advisory reconciled", func() bool {
		return testutil.ToFloat64(r.metrics.reconciled.WithLabelValues("terminated", "already_dead_lettered")) == 1
	})
	// A MAX_DELIVERIES advisory for the same event (a dispatcher that
	// stored the dead letter and died before terminating) stores nothing
	// new: same id, same Nats-Msg-Id.
	fake := nats.NewMsg(reconcile.AdvisoryMaxDeliveries + ConsumerName("erp"))
	fake.Data = fmt.Appendf(nil, `{"type":"io.nats.jetstream.advisory.v1.max_deliver","stream":"EVENTS","consumer":%q,"stream_seq":%d,"deliveries":3}`, ConsumerName("erp"), seq)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := e.js.PublishMsg(ctx, fake); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, "the max deliveries advisory reconciled", func() bool {
		return testutil.ToFloat64(r.metrics.reconciled.WithLabelValues("max_deliveries", "already_dead_lettered")) == 1
	})
	if dls := natstest.DeadLetters(t, e.js, "erp"); len(dls) != 1 ||
		dls[0].Reason != switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_PERMANENT_FAILURE {
		t.Errorf("dead letters = %v, want the dispatcher's one only", dls)
	}

	// An operator terminates an event by hand: it becomes a dead letter.
	other := destinationFor("wms", p.URL, 3)
	other.Subjects = []string{"events.stock.>"}
	e.provision(t, d, other)
	wseq := e.publish(t, stockEvent("ev-manual"))
	msg := e.takeOne(t, "wms")
	if err := msg.TermWithReason("operator: malformed sku"); err != nil {
		t.Fatal(err)
	}
	dl := firstDeadLetter(t, e, "wms")
	if dl.StreamSeq != wseq || dl.EventId != "ev-manual" || !strings.Contains(dl.LastError, "operator: malformed sku") {
		t.Errorf("dead letter = %v", dl)
	}
}

func stockEvent(id string) events.Event {
	ev := orderEvent(id)
	ev.Type = "stock.changed"
	return ev
}

// publishAdvisory stores a consumer advisory in ADVISORIES as the server
// would, and returns its sequence there.
func (e *testEnv) publishAdvisory(t *testing.T, subject string, data []byte) uint64 {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Data = data
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := e.js.PublishMsg(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// The reconciler acknowledges and leaves alone what is not its business
// (an unreadable advisory, one about another service's consumer), and an
// advisory older than the current EVENTS stream is not read by a sequence
// that now belongs to another event: its dead letter names the event as
// unknown and carries no payload. A current advisory for the same
// sequence reads the event.
func TestReconcilerSkipsForeignAndStaleAdvisories(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPartner(t, reply{status: http.StatusOK})
	r := e.start(t, destinationFor("erp", p.URL, 3))
	ev := orderEvent("ev-now")
	seq := e.publish(t, ev)
	e.waitSettled(t, "erp", 1)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, natsx.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	created := s.CachedInfo().Created
	maxDeliveries := func(consumer string, at time.Time) []byte {
		return fmt.Appendf(nil, `{"type":"io.nats.jetstream.advisory.v1.max_deliver","stream":"EVENTS","consumer":%q,"stream_seq":%d,"deliveries":3,"timestamp":%q}`,
			consumer, seq, at.Format(time.RFC3339Nano))
	}
	e.publishAdvisory(t, reconcile.AdvisoryMaxDeliveries+ConsumerName("erp"), []byte("not json"))
	e.publishAdvisory(t, reconcile.AdvisoryMaxDeliveries+ConsumerName("erp"), []byte(`{"stream":"EVENTS","consumer":"dispatcher-erp"}`)) // no sequence
	e.publishAdvisory(t, reconcile.AdvisoryMaxDeliveries+natsx.ConsumerAuditorEvents, maxDeliveries(natsx.ConsumerAuditorEvents, time.Now()))
	// From an EVENTS deleted since: seq now belongs to ev-now.
	e.publishAdvisory(t, reconcile.AdvisoryMaxDeliveries+ConsumerName("erp"), maxDeliveries(ConsumerName("erp"), created.Add(-time.Hour)))
	last := e.publishAdvisory(t, reconcile.AdvisoryMaxDeliveries+ConsumerName("crm"), maxDeliveries(ConsumerName("crm"), time.Now()))

	waitfor.True(t, "every advisory acknowledged", func() bool {
		c, err := e.js.Consumer(ctx, natsx.StreamAdvisories, reconcile.ConsumerName)
		if err != nil {
			t.Fatal(err)
		}
		info := c.CachedInfo()
		return info.AckFloor.Stream >= last && info.NumAckPending == 0 && info.NumPending == 0
	})
	if n := natstest.Count(t, e.js, natsx.StreamDeadLetters, "dlq.>"); n != 2 {
		t.Errorf("%d dead letters, want 2 (the stale advisory's and the current one's)", n)
	}
	inc := e.incarnation(t)
	stale := natstest.DeadLetters(t, e.js, "erp")
	if len(stale) != 1 || stale[0].Id != ids.DeadLetterID(inc, seq, "erp") || stale[0].EventId != ids.UnknownEventID(seq) ||
		len(stale[0].Payload) != 0 || stale[0].Subject != "" || !strings.Contains(stale[0].LastError, "no longer in EVENTS") ||
		stale[0].Reason != switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_DELIVERIES_ADVISORY {
		t.Errorf("dead letter of the stale advisory = %v, want an unknown event without payload", stale)
	}
	current := natstest.DeadLetters(t, e.js, "crm")
	if len(current) != 1 || current[0].EventId != ev.ID || string(current[0].Payload) != string(ev.Data) || current[0].Subject != "events.order.created" {
		t.Errorf("dead letter of the current advisory = %v, want ev-now read from EVENTS", current)
	}
	if got := testutil.ToFloat64(r.metrics.reconciled.WithLabelValues("max_deliveries", "dead_lettered")); got != 2 {
		t.Errorf("reconciled max_deliveries dead_lettered = %v, want 2", got)
	}
	if n := len(p.received()); n != 1 {
		t.Errorf("the partner got %d requests, want the one delivery", n)
	}
}
