package reconcile_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/destinations"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/dispatcher/internal/deadletter"
	"github.com/switchyard/switchyard/services/dispatcher/internal/ids"
	"github.com/switchyard/switchyard/services/dispatcher/internal/reconcile"
)

// The reconciler, alone against a server: each kind of advisory becomes a
// dead letter, or is acknowledged without one, as its doc says.
func TestReconciler(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	var inc ids.Incarnation
	if _, err := inc.Read(ctx, js, natstest.Logger(t)); err != nil {
		t.Fatal(err)
	}
	m := reconcile.Metrics{
		Reconciled:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reconciled"}, []string{"kind", "result"}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dead_letters"}, []string{"destination"}),
	}
	rc := topology.Topology{}.ReconcilerConsumer()
	if _, err := js.CreateOrUpdateConsumer(ctx, rc.Stream, rc.Config); err != nil {
		t.Fatal(err)
	}
	r := reconcile.New(reconcile.Config{JS: js, DeadLetters: deadletter.NewWriter(js, auditlog.NewEmitter(js, "dispatcher")),
		Incarnation: &inc, Logger: natstest.Logger(t), FetchWait: 200 * time.Millisecond, Metrics: m})
	natstest.Go(t, "reconciler", r.Run)

	res, err := events.Publish(ctx, js, events.Event{ID: "ev-1", Type: "order.created", Data: []byte(`{"order":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	seq := res.Sequence
	advise := func(subject, consumer string, data string) uint64 {
		t.Helper()
		msg := nats.NewMsg(subject + consumer)
		msg.Data = []byte(data)
		ack, err := js.PublishMsg(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	maxDeliveries := fmt.Sprintf(`{"stream":"EVENTS","consumer":%%q,"stream_seq":%d,"deliveries":3}`, seq)
	terminated := fmt.Sprintf(`{"stream":"EVENTS","consumer":%%q,"stream_seq":%d,"deliveries":1,"reason":%%q}`, seq)
	erp, crm, ledger := destinations.ConsumerName("erp"), destinations.ConsumerName("crm"), destinations.ConsumerName("ledger")
	// The final attempt was not settled: a dead letter; the same advisory
	// again adds none.
	advise(reconcile.AdvisoryMaxDeliveries, erp, fmt.Sprintf(maxDeliveries, erp))
	advise(reconcile.AdvisoryMaxDeliveries, erp, fmt.Sprintf(maxDeliveries, erp))
	// The dispatcher terminated it: its dead letter is stored already.
	advise(reconcile.AdvisoryTerminated, crm, fmt.Sprintf(terminated, crm, switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_PERMANENT_FAILURE.String()))
	// Someone else terminated it: a dead letter.
	advise(reconcile.AdvisoryTerminated, ledger, fmt.Sprintf(terminated, ledger, "operator: malformed sku"))
	// Not the dispatcher's, and unreadable: acknowledged, nothing else.
	advise(reconcile.AdvisoryMaxDeliveries, natsx.ConsumerAuditorEvents, fmt.Sprintf(maxDeliveries, natsx.ConsumerAuditorEvents))
	last := advise(reconcile.AdvisoryMaxDeliveries, erp, "not json")

	waitfor.True(t, "every advisory acknowledged", func() bool {
		c, err := js.Consumer(ctx, natsx.StreamAdvisories, reconcile.ConsumerName)
		if err != nil {
			t.Fatal(err)
		}
		info := c.CachedInfo()
		return info.AckFloor.Stream >= last && info.NumAckPending == 0 && info.NumPending == 0
	})
	token, _ := inc.Get()
	for _, tt := range []struct {
		destination string
		want        []switchyardv1.DeadLetterReason
	}{
		{"erp", []switchyardv1.DeadLetterReason{switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_DELIVERIES_ADVISORY}},
		{"crm", nil},
		{"ledger", []switchyardv1.DeadLetterReason{switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_PERMANENT_FAILURE}},
	} {
		dls := natstest.DeadLetters(t, js, tt.destination)
		if len(dls) != len(tt.want) {
			t.Errorf("%s: %d dead letters, want %d", tt.destination, len(dls), len(tt.want))
			continue
		}
		for i, dl := range dls {
			if dl.Reason != tt.want[i] || dl.Id != ids.DeadLetterID(token, seq, tt.destination) || dl.EventId != "ev-1" ||
				string(dl.Payload) != `{"order":1}` || dl.Subject != "events.order.created" {
				t.Errorf("%s: dead letter = %v", tt.destination, dl)
			}
		}
	}
	for _, tt := range []struct {
		kind, result string
		want         float64
	}{
		{"max_deliveries", "dead_lettered", 1},
		{"max_deliveries", "already_dead_lettered", 1},
		{"terminated", "already_dead_lettered", 1},
		{"terminated", "dead_lettered", 1},
	} {
		if got := testutil.ToFloat64(m.Reconciled.WithLabelValues(tt.kind, tt.result)); got != tt.want {
			t.Errorf("reconciled{%s,%s} = %v, want %v", tt.kind, tt.result, got, tt.want)
		}
	}
	if n := natstest.Count(t, js, natsx.StreamDeadLetters, "dlq.>"); n != 2 {
		t.Errorf("%d dead letters in all, want 2", n)
	}
}
