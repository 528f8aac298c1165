package engine

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/notifier/internal/rules"
	"github.com/switchyard/switchyard/services/notifier/internal/sender"
)

// BenchmarkIngest measures how fast one notifier folds delivery-attempt
// records (20 destinations, one in ten a retryable failure) into its KV
// state and acknowledges them: the records are published first, then the
// clock runs until the notifier's consumer has acknowledged them all.
func BenchmarkIngest(b *testing.B) {
	ns := natstest.Start(b)
	_, js := ns.Connect(b)
	em := auditlog.NewEmitter(js, "dispatcher")
	now := time.Now()
	for i := range b.N {
		a := &switchyardv1.DeliveryAttempt{
			EventId: fmt.Sprintf("ev-%d", i), Destination: fmt.Sprintf("dest-%d", i%20), Attempt: 1,
			StartedAt: timestamppb.New(now), Duration: durationpb.New(time.Duration(20+i%200) * time.Millisecond),
			StatusCode: 200, Outcome: switchyardv1.Outcome_OUTCOME_DELIVERED,
		}
		if i%10 == 0 {
			a.StatusCode, a.Outcome = 503, switchyardv1.Outcome_OUTCOME_RETRYABLE
		}
		if _, err := em.EmitAsync(&switchyardv1.AuditRecord{Detail: &switchyardv1.AuditRecord_DeliveryAttempt{DeliveryAttempt: a}}); err != nil {
			b.Fatal(err)
		}
		if i%5000 == 4999 {
			<-js.PublishAsyncComplete()
		}
	}
	<-js.PublishAsyncComplete()

	eng, err := New(js, auditlog.NewEmitter(js, "notifier"), Config{
		Rules:   rules.NewConfig(config.Alerts{}, nil),
		Senders: []sender.Sender{sender.Console{Log: slog.New(slog.DiscardHandler)}},
		Logger:  slog.New(slog.DiscardHandler),
		Clock:   clockwork.NewRealClock(),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cons, err := js.Consumer(ctx, natsx.StreamAudit, natsx.ConsumerNotifier)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	// Poll the consumer's ack floor: the measure ends when it reaches the
	// last record.
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for range poll.C {
		info, err := cons.Info(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if info.AckFloor.Stream >= uint64(b.N) {
			break
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(testutil.ToFloat64(eng.m.stateWrites.WithLabelValues("ok"))*1000/float64(b.N), "kv-writes/1000records")
	b.ReportMetric(testutil.ToFloat64(eng.m.flushes)*1000/float64(b.N), "flushes/1000records")
	cancel()
	<-done
}
