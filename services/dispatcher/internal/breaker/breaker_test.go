package breaker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/destinations"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/dispatcher/internal/breaker"
)

func testMetrics() breaker.Metrics {
	return breaker.Metrics{
		State:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "state"}, []string{"destination"}),
		Changes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "changes"}, []string{"destination", "to"}),
	}
}

// replica is one dispatcher replica's breaker set, provisioned and
// running until the test ends.
func replica(t *testing.T, ns *natstest.Server, p breaker.Policy) (*breaker.Breaker, breaker.Metrics) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	_, js := ns.Connect(t)
	m := testMetrics()
	set := breaker.NewSet(breaker.Config{JS: js, Audit: auditlog.NewEmitter(js, "dispatcher"), Logger: natstest.Logger(t),
		Sync: 10 * time.Millisecond, Metrics: m})
	b := set.Add("erp", p, natstest.Logger(t))
	if err := set.Provision(ctx, topology.Topology{}.Breakers().Config); err != nil {
		t.Fatal(err)
	}
	if err := b.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); set.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return b, m
}

// Two replicas adding failures to one circuit open it once, between them:
// the replica whose write opens it pauses the destination's consumer and
// records the transition; the other follows through the bucket watch.
func TestReplicasShareOneCircuit(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	dc := config.Config{Destinations: []config.Destination{{Name: "erp", URL: "https://erp.example/hooks", Subjects: []string{"events.>"}}}}.WithDefaults().Destinations[0]
	if _, err := destinations.EnsureConsumers(ctx, js, topology.DestinationConsumers([]config.Destination{dc})); err != nil {
		t.Fatal(err)
	}
	p := breaker.Policy{Breaker: dc.Breaker}
	p.ConsecutiveFailures = 4
	a, am := replica(t, ns, p)
	b, bm := replica(t, ns, p)

	// Each replica sees two failures in a row: four across both.
	for _, r := range []*breaker.Breaker{a, b} {
		for range 2 {
			r.Record(true, "HTTP 503", false)
		}
		r.Flush(ctx)
	}
	for name, r := range map[string]*breaker.Breaker{"a": a, "b": b} {
		waitfor.True(t, "replica "+name+" sees the circuit open", func() bool {
			c, _ := r.View()
			return c.State == switchyardv1.CircuitState_CIRCUIT_STATE_OPEN
		})
	}
	if n := testutil.ToFloat64(am.Changes.WithLabelValues("erp", "open")) + testutil.ToFloat64(bm.Changes.WithLabelValues("erp", "open")); n != 1 {
		t.Errorf("%v transitions made, want 1 (by the replica whose write opened it)", n)
	}
	if c, _ := a.View(); c.Consecutive != 4 || c.LastError != "HTTP 503" || c.Change == nil || c.Change.From != switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED {
		t.Errorf("shared circuit = %+v", c)
	}
	cons, err := js.Consumer(ctx, natsx.StreamEvents, destinations.ConsumerName("erp"))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := cons.Info(ctx); err != nil || !info.Paused {
		t.Errorf("consumer paused = %v (%v), want paused while the circuit is open", info != nil && info.Paused, err)
	}
	recs := natstest.AuditRecords(t, js, "audit."+auditlog.KindCircuit+".erp")
	if len(recs) != 1 || recs[0].GetCircuitChanged().GetTo() != switchyardv1.CircuitState_CIRCUIT_STATE_OPEN {
		t.Errorf("circuit records = %v, want the one opening", recs)
	}

	// Recording the state again adds no second record: same id.
	a.RecordAgain(ctx)
	b.RecordAgain(ctx)
	if recs := natstest.AuditRecords(t, js, "audit."+auditlog.KindCircuit+".erp"); len(recs) != 1 {
		t.Errorf("%d circuit records after recording it again, want 1", len(recs))
	}

	// Prune forgets the circuit; pruning what is gone is no error.
	for range 2 {
		if err := breaker.Prune(ctx, js, "erp"); err != nil {
			t.Fatal(err)
		}
	}
	kv, err := js.KeyValue(ctx, breaker.KVBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, "erp"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("circuit after Prune: %v, want %v", err, jetstream.ErrKeyNotFound)
	}
}

// Prune without the bucket (no dispatcher ever ran) is no error.
func TestPruneWithoutBucket(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	if err := breaker.Prune(context.Background(), js, "erp"); err != nil {
		t.Errorf("Prune = %v, want nil", err)
	}
}
