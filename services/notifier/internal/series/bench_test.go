package series

import (
	"testing"
	"time"

	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// BenchmarkApplyAndMerge is the in-memory cost per record: decode-free
// Apply into a delta, and a Merge of the delta every 2000 records.
func BenchmarkApplyAndMerge(b *testing.B) {
	recs := make([]*switchyardv1.AuditRecord, 2000)
	for i := range recs {
		outcome, status := switchyardv1.Outcome_OUTCOME_DELIVERED, int32(200)
		if i%10 == 0 {
			outcome, status = switchyardv1.Outcome_OUTCOME_RETRYABLE, 503
		}
		recs[i] = attempt(t0.Add(time.Duration(i)*time.Millisecond), status, outcome, time.Duration(20+i%200)*time.Millisecond)
	}
	var state *switchyardv1.Series
	b.ResetTimer()
	for i := 0; i < b.N; i += len(recs) {
		d := New(KindDestination, "erp")
		now := t0.Add(time.Duration(i) * time.Millisecond)
		for _, r := range recs[:min(len(recs), b.N-i)] {
			Apply(d, r, now)
		}
		state = Merge(state, d, now, limits)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
