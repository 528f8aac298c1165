package writer

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/pgtest"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
	"github.com/switchyard/switchyard/services/auditor/internal/store/storetest"
)

// BenchmarkWriterThroughput measures the whole path into Postgres: audit
// records published to AUDIT as fast as JetStream takes them, read by the
// writer, written in batches of 500 and acknowledged. Each round publishes
// 10,000 attempt records and runs until the writer's consumer has
// acknowledged all of them. (The writer keeps running between rounds: a
// stopped writer's outstanding pull requests would hold the next round's
// messages until their ack wait.)
func BenchmarkWriterThroughput(b *testing.B) {
	ns := natstest.Start(b)
	_, js := ns.Connect(b)
	st, err := store.OpenPostgres(context.Background(), pgtest.Schema(b))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	cons, err := js.Consumer(context.Background(), natsx.StreamAudit, natsx.ConsumerAuditor)
	if err != nil {
		b.Fatal(err)
	}
	w, err := New(js, st, Config{Logger: slog.New(slog.DiscardHandler), LagInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	emitter := auditlog.NewEmitter(js, "dispatcher")
	const perRound = 10_000
	b.ResetTimer()
	start := time.Now()
	for round := range b.N {
		publish(b, emitter, round, perRound)
		waitDrained(b, cons, perRound*(round+1))
	}
	b.ReportMetric(float64(b.N*perRound)/time.Since(start).Seconds(), "records/s")
}

func publish(b *testing.B, e *auditlog.Emitter, round, n int) {
	b.Helper()
	now := time.Now()
	var futures []jetstream.PubAckFuture
	for i := range n {
		rec := storetest.RoundAttempt(fmt.Sprintf("ev-%d-%d", round, i/2), "erp", uint64(round*n+i/2), 1+i%2, now,
			200, switchyardv1.Outcome_OUTCOME_DELIVERED, i%2 == 1, "")
		f, err := e.EmitAsync(rec)
		if err != nil {
			b.Fatal(err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.Fatal(err)
		}
	}
}

// waitDrained polls the consumer until its ack floor covers want records.
func waitDrained(b *testing.B, cons jetstream.Consumer, want int) {
	b.Helper()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(5 * time.Minute)
	for range tick.C {
		info, err := cons.Info(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		if info.AckFloor.Consumer >= uint64(want) && info.NumAckPending == 0 && info.NumPending == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the writer did not drain %d records", want)
		}
	}
}

// BenchmarkWriterCatchUp measures the writer alone, as after a Postgres
// outage: 50,000 attempt records wait in AUDIT before the writer starts,
// and the timer runs from its start until its consumer has acknowledged
// all of them. Each round has its own server and schema (a stopped
// writer's pull requests would hold the next round's messages).
func BenchmarkWriterCatchUp(b *testing.B) {
	const perRound = 50_000
	for round := range b.N {
		b.StopTimer()
		ns := natstest.Start(b)
		_, js := ns.Connect(b)
		st, err := store.OpenPostgres(context.Background(), pgtest.Schema(b))
		if err != nil {
			b.Fatal(err)
		}
		if err := st.Migrate(context.Background()); err != nil {
			b.Fatal(err)
		}
		cons, err := js.Consumer(context.Background(), natsx.StreamAudit, natsx.ConsumerAuditor)
		if err != nil {
			b.Fatal(err)
		}
		publish(b, auditlog.NewEmitter(js, "dispatcher"), round, perRound)
		w, err := New(js, st, Config{Logger: slog.New(slog.DiscardHandler), LagInterval: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		go func() { done <- w.Run(ctx) }()
		waitDrained(b, cons, perRound)
		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
		st.Close()
	}
	b.ReportMetric(float64(b.N*perRound)/b.Elapsed().Seconds(), "records/s")
}
