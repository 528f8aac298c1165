package events_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natscluster"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/topology"
)

// Killing the node that leads EVENTS during a burst of publishes loses
// nothing and doubles nothing: every Publish returns a PubAck (PubAcks lost
// with the leader are waited for again under the same Nats-Msg-Id), and
// EVENTS holds exactly one message per acknowledged event.
func TestPublishSurvivesTheEventsLeaderDying(t *testing.T) {
	t.Parallel()
	c := natscluster.Start(t, natscluster.Options{})
	_, js := c.Connect(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	if err := topology.Ensure(ctx, js, topology.Topology{Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	leader := c.WaitStreamLeader(t, js, natsx.StreamEvents)

	const publishers, each = 8, 150
	var acked, duplicates, failed atomic.Int64
	var slowest atomic.Int64
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				start := time.Now()
				pctx, cancel := context.WithTimeout(ctx, time.Minute)
				res, err := events.Publish(pctx, js, events.Event{ID: fmt.Sprintf("burst-%d-%d", p, i), Type: "order.created", Data: []byte(`{}`)})
				cancel()
				if err != nil {
					failed.Add(1)
					t.Errorf("publish burst-%d-%d: %v", p, i, err)
					continue
				}
				acked.Add(1)
				if res.Duplicate {
					duplicates.Add(1)
				}
				if d := int64(time.Since(start)); d > slowest.Load() {
					slowest.Store(d)
				}
			}
		}()
	}
	waitfor.Within(t, time.Minute, "a third of the burst acknowledged", func() bool { return acked.Load() >= publishers*each/3 })
	c.Kill(t, leader)
	wg.Wait()

	if acked.Load() != publishers*each {
		t.Fatalf("%d of %d publishes acknowledged (%d failed)", acked.Load(), publishers*each, failed.Load())
	}
	if duplicates.Load() != 0 {
		t.Errorf("%d PubAcks said duplicate; every id was published once", duplicates.Load())
	}
	next := c.WaitStreamLeader(t, js, natsx.StreamEvents)
	stored := waitfor.ValueWithin(t, time.Minute, "EVENTS' message count", func() (uint64, bool) {
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		s, err := js.Stream(ictx, natsx.StreamEvents)
		if err != nil {
			return 0, false
		}
		return s.CachedInfo().State.Msgs, true
	})
	if stored != publishers*each {
		t.Errorf("EVENTS holds %d messages after %d PubAcks: %d lost or doubled", stored, acked.Load(), int64(stored)-acked.Load())
	}
	t.Logf("leader %s killed, %s took over; %d acked, %d stored, slowest publish %s",
		leader, next, acked.Load(), stored, time.Duration(slowest.Load()).Round(time.Millisecond))
}
