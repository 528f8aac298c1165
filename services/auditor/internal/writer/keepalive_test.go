package writer

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
	"github.com/switchyard/switchyard/services/auditor/internal/store/storetest"
)

// outageStore is the real store behind a switch: while down, every write
// fails as unavailable. It counts how often each item was written.
type outageStore struct {
	store.Store
	down atomic.Bool

	mu      sync.Mutex
	written map[string]int
}

func (s *outageStore) Write(ctx context.Context, b store.Batch) error {
	if s.down.Load() {
		return fmt.Errorf("test outage: %w", store.ErrUnavailable)
	}
	if err := s.Store.Write(ctx, b); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range b.Records {
		s.written["record "+r.GetId()]++
	}
	for _, e := range b.Events {
		s.written["event "+e.ID]++
	}
	return nil
}

// An outage longer than the consumers' ack wait, with two writers: the
// batches in hand are kept in progress (so JetStream does not give them to
// the other writer meanwhile) and what the readers had buffered beyond
// them is handed back rather than left to time out; after the store is
// back every item has been written exactly once, by one writer.
func TestOutageLongerThanTheAckWaitWritesEachItemOnce(t *testing.T) {
	t.Parallel()
	db := newSchema(t)
	ns := natstest.Start(t)
	const ackWait = time.Second
	ctx := testCtx(t)
	_, js := ns.Connect(t)
	for _, c := range (topology.Topology{}).Consumers() {
		stream, cfg := c.Stream, c.Config
		cfg.AckWait = ackWait
		if _, err := js.CreateOrUpdateConsumer(ctx, stream, cfg); err != nil {
			t.Fatal(err)
		}
	}
	st := &outageStore{Store: db.open(t, db.url), written: map[string]int{}}
	st.down.Store(true)
	short := func(c *Config) { c.WriteTimeout = ackWait / 2 }
	first, second := startOn(t, ns, st, short), startOn(t, ns, st, short)

	const records, evs = 300, 60
	for i := range records {
		first.emit(t, storetest.Rejection(fmt.Sprint("rej-", i), time.Now()))
	}
	for i := range evs {
		if _, err := events.Publish(ctx, js, events.Event{ID: fmt.Sprint("ev-", i), Type: "order.created", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	// Both writers hold batches and have been failing for three ack waits.
	waitfor.True(t, "both writers failing for three ack waits", func() bool {
		return first.metric(t, "switchyard_auditor_write_failing_seconds") >= 3*ackWait.Seconds() &&
			second.metric(t, "switchyard_auditor_write_failing_seconds") >= 3*ackWait.Seconds()
	})

	st.down.Store(false)
	first.waitAcked(t)
	st.mu.Lock()
	defer st.mu.Unlock()
	for id, n := range st.written {
		if n != 1 {
			t.Errorf("%s written %d times, want once", id, n)
		}
	}
	for i := range records {
		if id := fmt.Sprint("record rej-", i); st.written[id] != 1 {
			t.Errorf("%s written %d times, want once", id, st.written[id])
		}
	}
	for i := range evs {
		if id := fmt.Sprint("event ev-", i); st.written[id] != 1 {
			t.Errorf("%s written %d times, want once", id, st.written[id])
		}
	}
	for table, want := range map[string]int{"rejections": records, "events": evs} {
		if n := db.count(t, "SELECT count(*) FROM "+table); n != want {
			t.Errorf("%s: %d rows after the outage, want %d", table, n, want)
		}
	}
}
