package backlog_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/destinations"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/dispatcher/internal/backlog"
)

func gauge(name string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name}, []string{"destination"})
}

// A quiet destination (nothing waiting, breaker closed) is reported once,
// not every interval; one with events waiting is reported with their count
// and the age of the oldest, and the gauges follow.
func TestReport(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ns := natstest.Start(t)
	nc, js := ns.Connect(t)
	dc := config.Config{Destinations: []config.Destination{{Name: "erp", URL: "https://erp.example/hooks", Subjects: []string{"events.order.>"}}}}.
		WithDefaults().Destinations[0]
	if _, err := destinations.EnsureConsumers(ctx, js, topology.DestinationConsumers([]config.Destination{dc})); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, natsx.StreamEvents, destinations.ConsumerName("erp"))
	if err != nil {
		t.Fatal(err)
	}
	// Every report published, duplicates too (AUDIT keeps one per id).
	var mu sync.Mutex
	var reports []*switchyardv1.BacklogReport
	if _, err := nc.Subscribe("audit."+auditlog.KindBacklog+".erp", func(m *nats.Msg) {
		rec, err := auditlog.Decode(m.Data)
		if err != nil {
			t.Errorf("decode: %v", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		reports = append(reports, rec.GetBacklog())
	}); err != nil {
		t.Fatal(err)
	}
	m := backlog.Metrics{Pending: gauge("p"), AckPending: gauge("a"), MaxAckPending: gauge("m"), OldestAge: gauge("o"), Full: gauge("f")}
	r := backlog.NewReporter(backlog.Config{JS: js, Audit: auditlog.NewEmitter(js, "dispatcher"), Interval: time.Hour, Metrics: m},
		"erp", natstest.Logger(t))
	report := func() {
		t.Helper()
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Report(ctx, info, switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED); err != nil {
			t.Fatal(err)
		}
	}

	report() // quiet: reported once
	report() // still quiet: not again
	for _, id := range []string{"ev-1", "ev-2"} {
		if _, err := events.Publish(ctx, js, events.Event{ID: id, Type: "order.created", Data: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}
	report()
	waitfor.True(t, "two reports", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(reports) >= 2
	})
	mu.Lock()
	defer mu.Unlock()
	if len(reports) != 2 || reports[0].NumPending != 0 || reports[1].NumPending != 2 || reports[1].OldestPendingAge.AsDuration() <= 0 ||
		reports[1].MaxAckPending != int64(dc.MaxAckPending) || reports[1].Circuit != switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED {
		t.Errorf("reports = %v, want the quiet one once, then two pending", reports)
	}
	if got := testutil.ToFloat64(m.Pending.WithLabelValues("erp")); got != 2 {
		t.Errorf("pending gauge = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.Full.WithLabelValues("erp")); got != 0 {
		t.Errorf("full gauge = %v, want 0", got)
	}
}
