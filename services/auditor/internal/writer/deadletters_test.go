package writer

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
	"github.com/switchyard/switchyard/services/auditor/internal/store/storetest"
)

// The dispatcher stores each dead letter in DEAD_LETTERS and sends a copy
// without the payload to AUDIT. The audit log records it from either: a
// lost AUDIT copy leaves no gap, and the two copies make one row.
func TestDeadLettersFromTheDeadLetterStream(t *testing.T) {
	t.Parallel()
	forEachMigrated(t, func(t *testing.T, st store.Store) {
		e := start(t, st)
		full := func(eventID string, seq uint64) *switchyardv1.DeadLetter {
			dl := storetest.RoundDeadLetter(eventID, "erp", seq, time.Now().UTC().Truncate(time.Microsecond), "").GetDeadLettered()
			dl.Payload, dl.Headers = []byte(`{"order":1}`), map[string]string{"Content-Type": "application/json"}
			return dl
		}
		// Only in DEAD_LETTERS: the AUDIT copy was lost.
		lost := full("ev-lost-copy", 11)
		lost.AuthFailure, lost.LastStatusCode = true, 401
		natstest.PublishDeadLetter(t, e.js, lost)
		// In both.
		both := full("ev-both", 12)
		natstest.PublishDeadLetter(t, e.js, both)
		e.emit(t, storetest.RoundDeadLetter("ev-both", "erp", 12, both.DeadLetteredAt.AsTime(), ""))
		// A reconciled dead letter of an event EVENTS no longer had.
		unknown := full("", 13)
		unknown.Payload, unknown.Subject = nil, ""
		natstest.PublishDeadLetter(t, e.js, unknown)
		// Not a dead letter at all.
		garbage := nats.NewMsg("dlq.erp")
		garbage.Data = []byte{0xff, 0x00}
		if _, err := e.js.PublishMsg(testCtx(t), garbage); err != nil {
			t.Fatal(err)
		}
		e.waitAcked(t)

		for _, id := range []string{"ev-lost-copy", "ev-both"} {
			d, err := st.GetEvent(testCtx(t), id)
			if err != nil || len(d.DeadLetters) != 1 || len(d.Deliveries) != 1 || d.Deliveries[0].Status != auditapi.StatusDeadLettered {
				t.Errorf("%s: dead letters %+v, deliveries %+v (%v); want one of each, dead-lettered", id, d.DeadLetters, d.Deliveries, err)
			}
		}
		dl, err := st.GetDeadLetter(testCtx(t), lost.Id)
		if err != nil || dl.LastStatusCode != 401 || dl.Destination != "erp" || dl.StreamSeq != 11 ||
			!dl.DeadLetteredAt.Equal(lost.DeadLetteredAt.AsTime()) {
			t.Errorf("dead letter from DEAD_LETTERS = %+v (%v)", dl, err)
		}
		if dl, err := st.GetDeadLetter(testCtx(t), unknown.Id); err != nil || dl.EventID != "unknown:EVENTS:13" {
			t.Errorf("unknown event's dead letter = %+v (%v)", dl, err)
		}
		ds, _, err := st.ListDeliveries(testCtx(t), store.DeliveryFilter{}, store.Page{})
		if err != nil || len(ds) != 2 {
			t.Errorf("deliveries = %+v (%v), want the two known events' only", ds, err)
		}
		parked, _, err := st.ListParked(testCtx(t), store.Page{})
		if err != nil || len(parked) != 1 || parked[0].Stream != natsx.StreamDeadLetters {
			t.Errorf("parked = %+v (%v), want the undecodable dead letter", parked, err)
		}
		if got := e.metric(t, "switchyard_auditor_written_total"); got < 4 {
			t.Errorf("written_total = %v", got)
		}
	})
}

// Every labelled series is there from the start, at zero.
func TestMetricsExistBeforeTheFirstItem(t *testing.T) {
	t.Parallel()
	st := backends["sqlite"](t)
	e := start(t, st)
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				seen[mf.GetName()+"{"+l.GetValue()+"}"] = true
			}
		}
	}
	for _, name := range []string{"switchyard_auditor_parked_total", "switchyard_auditor_written_total", "switchyard_auditor_pending"} {
		for _, stream := range []string{natsx.StreamAudit, natsx.StreamEvents, natsx.StreamDeadLetters} {
			if !seen[name+"{"+stream+"}"] {
				t.Errorf("%s{stream=%q} missing before anything was written", name, stream)
			}
		}
	}
}

// byteSpy is the real store, noting the largest payload bytes of a write.
type byteSpy struct {
	store.Store
	mu  sync.Mutex
	max int
}

func (s *byteSpy) Write(ctx context.Context, b store.Batch) error {
	n := 0
	for _, e := range b.Events {
		n += len(e.Payload)
	}
	s.mu.Lock()
	s.max = max(s.max, n)
	s.mu.Unlock()
	return s.Store.Write(ctx, b)
}

// Events carry bodies up to the server's max_payload (8 MiB embedded): the
// reader holds a bounded number of bytes in the client, not a number of
// messages, and a batch is bounded by bytes too.
func TestReadingEventsIsBoundedByBytes(t *testing.T) {
	t.Parallel()
	db := newSchema(t)
	spy := &byteSpy{Store: db.open(t, db.url)}
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	const n, size = 48, 1 << 20
	body := make([]byte, size)
	for i := range n {
		if _, err := events.Publish(testCtx(t), js, events.Event{ID: fmt.Sprint("big-", i), Type: "order.created", Data: body}); err != nil {
			t.Fatal(err)
		}
	}
	// Writes to events hang (and time out) until the lock goes, so what
	// the reader pulled meanwhile stays delivered and unacknowledged.
	unlock := db.lock(t, "events")
	const batchBytes = 2 * size
	e := startOn(t, ns, spy, func(c *Config) {
		c.MaxBatchBytes = batchBytes
		c.ReadBufferBytes = 1 // raised to twice the server's max_payload
		c.WriteTimeout = time.Second
	})
	waitfor.True(t, "two writes timed out", func() bool { return e.metric(t, "switchyard_auditor_write_errors_total") >= 2 })
	// Buffer (2 x 8 MiB) plus the batch in hand (2 MiB), in 1 MiB events,
	// plus one for the headers' bytes; without a byte bound the reader
	// takes every one of them (up to twice the batch size, 100).
	limit := (2*int(js.Conn().MaxPayload())+batchBytes)/size + 1
	if info := e.consumer(t, natsx.StreamEvents, natsx.ConsumerAuditorEvents); info.NumAckPending > limit {
		t.Errorf("%d events of 1 MiB delivered to the reader at once, want at most %d", info.NumAckPending, limit)
	}
	unlock()
	e.waitAcked(t)
	if got := db.count(t, "SELECT count(*) FROM events"); got != n {
		t.Errorf("%d events written, want %d", got, n)
	}
	spy.mu.Lock()
	defer spy.mu.Unlock()
	if spy.max > batchBytes {
		t.Errorf("a batch carried %d payload bytes, want at most %d", spy.max, batchBytes)
	}
}

// Parking is bounded by the write timeout like a write: a hung database
// makes it fail and retry (counted, and reported as lag), not hang.
func TestParkTimesOut(t *testing.T) {
	t.Parallel()
	db := newSchema(t)
	e := start(t, db.open(t, db.url))
	unlock := db.lock(t, "parked")
	garbage := nats.NewMsg("audit.other.garbage")
	garbage.Data = []byte{0xff, 0x01}
	if _, err := e.js.PublishMsg(testCtx(t), garbage); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, "parking timed out and is retried", func() bool { return e.metric(t, "switchyard_auditor_write_errors_total") >= 2 })
	waitfor.True(t, "an AuditLag record while parking hangs", func() bool {
		for _, rec := range natstest.AuditRecords(t, e.js, "audit.lag.>") {
			if l := rec.GetAuditLag(); l != nil && !l.CaughtUp && l.LastError != "" {
				return true
			}
		}
		return false
	})
	unlock()
	e.waitAcked(t)
	if n := db.count(t, "SELECT count(*) FROM parked"); n != 1 {
		t.Errorf("%d parked, want 1", n)
	}
}
