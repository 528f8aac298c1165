package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/testing/pgtest"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
)

// benchBatch is a realistic batch of audit records: for each event, one
// failed and one successful attempt, and for every tenth a rejection; 500
// records in all, as the writer batches them by default.
func benchBatch(n, size int) store.Batch {
	var b store.Batch
	now := time.Now()
	for i := 0; len(b.Records) < size; i++ {
		ev := fmt.Sprintf("bench-%d-%d", n, i)
		seq := uint64(n*size + i)
		for a, outcome := range []switchyardv1.Outcome{switchyardv1.Outcome_OUTCOME_RETRYABLE, switchyardv1.Outcome_OUTCOME_DELIVERED} {
			b.Records = append(b.Records, &switchyardv1.AuditRecord{
				Id: fmt.Sprintf("attempt:EVENTS:%d:erp:%d", seq, a+1), Time: timestamppb.New(now), Service: "dispatcher",
				Detail: &switchyardv1.AuditRecord_DeliveryAttempt{DeliveryAttempt: &switchyardv1.DeliveryAttempt{
					EventId: ev, Destination: "erp", Subject: "events.order.created", StreamSeq: seq, Attempt: int32(a + 1),
					StartedAt: timestamppb.New(now.Add(time.Duration(a) * time.Second)), Duration: durationpb.New(12 * time.Millisecond),
					StatusCode: int32(503 - 303*a), Outcome: outcome, Final: a == 1, ResponseSnippet: `{"status":"ok"}`,
				}},
			})
		}
		if i%10 == 0 {
			b.Records = append(b.Records, &switchyardv1.AuditRecord{
				Id: "rej-" + ev, Time: timestamppb.New(now), Service: "ingress",
				Detail: &switchyardv1.AuditRecord_WebhookRejected{WebhookRejected: &switchyardv1.WebhookRejected{
					Source: "shop", Reason: switchyardv1.RejectReason_REJECT_REASON_BAD_SIGNATURE, Detail: "signature does not match",
					RemoteAddr: "203.0.113.7", StatusCode: 401,
				}},
			})
		}
	}
	b.Records = b.Records[:size]
	return b
}

// BenchmarkWrite measures audit records written per second into each
// store, one batch (one transaction, one round trip for Postgres) at a
// time, as the writer does.
func BenchmarkWrite(b *testing.B) {
	for _, be := range []struct {
		name string
		open func(b *testing.B) store.Store
	}{
		{"postgres", func(b *testing.B) store.Store {
			st, err := store.OpenPostgres(context.Background(), pgtest.Schema(b))
			if err != nil {
				b.Fatal(err)
			}
			return st
		}},
		{"sqlite", func(b *testing.B) store.Store {
			st, err := store.OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "audit.db"))
			if err != nil {
				b.Fatal(err)
			}
			return st
		}},
	} {
		b.Run(be.name, func(b *testing.B) {
			st := be.open(b)
			defer st.Close()
			ctx := context.Background()
			if err := st.Migrate(ctx); err != nil {
				b.Fatal(err)
			}
			const size = 500
			batches := make([]store.Batch, b.N)
			for i := range batches {
				batches[i] = benchBatch(i, size)
			}
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				if err := st.Write(ctx, batches[i]); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(start)
			b.ReportMetric(float64(b.N*size)/elapsed.Seconds(), "records/s")
			b.ReportMetric(float64(elapsed.Microseconds())/float64(b.N)/1000, "ms/batch")
		})
	}
}
