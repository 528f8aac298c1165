package inflight_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/services/ingress/internal/inflight"
)

// slowStream is a subscriber on hold.> that answers publishes only when
// told to, as a JetStream stream that is slow to acknowledge would: the
// futures of PublishMsgAsync stay pending until then.
type slowStream struct {
	mu   sync.Mutex
	held []*nats.Msg
}

func newSlowStream(t *testing.T, nc *nats.Conn) *slowStream {
	t.Helper()
	s := &slowStream{}
	sub, err := nc.Subscribe("hold.>", func(m *nats.Msg) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.held = append(s.held, m)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return s
}

func (s *slowStream) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.held)
}

// ackAll acknowledges every held publish.
func (s *slowStream) ackAll(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.held {
		if err := m.Respond([]byte(`{"stream":"HOLD","seq":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	s.held = nil
}

type errorLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorLog) add(_ string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *errorLog) count(target error) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, err := range l.errs {
		if errors.Is(err, target) {
			n++
		}
	}
	return n
}

func setup(t *testing.T) (*slowStream, func(i int) func() (jetstream.PubAckFuture, error)) {
	t.Helper()
	nc, js := natstest.Start(t).Connect(t)
	s := newSlowStream(t, nc)
	return s, func(i int) func() (jetstream.PubAckFuture, error) {
		return func() (jetstream.PubAckFuture, error) {
			return js.PublishAsync("hold.x", []byte{byte(i)})
		}
	}
}

func TestTrackerBoundsInFlight(t *testing.T) {
	t.Parallel()
	stream, publish := setup(t)
	var log errorLog
	tr := inflight.New(inflight.Config{Max: 3, Timeout: time.Minute, OnError: log.add})

	started := 0
	for i := range 10 {
		if tr.Go("rec", publish(i)) {
			started++
		}
	}
	if started != 3 || tr.InFlight() != 3 || tr.Dropped() != 7 || log.count(inflight.ErrFull) != 7 {
		t.Fatalf("started %d, in flight %d, dropped %d (reported %d); want 3, 3, 7", started, tr.InFlight(), tr.Dropped(), log.count(inflight.ErrFull))
	}
	waitfor.True(t, "the held publishes to arrive", func() bool { return stream.count() == 3 })
	stream.ackAll(t)
	waitfor.True(t, "the slots to free", func() bool { return tr.InFlight() == 0 })
	if !tr.Go("rec", publish(11)) {
		t.Error("a publish was refused after the others were acknowledged")
	}
	waitfor.True(t, "the last publish to arrive", func() bool { return stream.count() == 1 })
	stream.ackAll(t)
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tr.Failed() != 0 {
		t.Errorf("%d failed", tr.Failed())
	}
}

func TestTrackerTimesOut(t *testing.T) {
	t.Parallel()
	_, publish := setup(t)
	var log errorLog
	tr := inflight.New(inflight.Config{Max: 2, Timeout: 50 * time.Millisecond, OnError: log.add})
	t.Cleanup(func() { _ = tr.Close(context.Background()) })
	for i := range 2 {
		if !tr.Go("rec", publish(i)) {
			t.Fatal("refused")
		}
	}
	waitfor.True(t, "the unacknowledged publishes to time out", func() bool { return log.count(inflight.ErrTimeout) == 2 })
	if tr.InFlight() != 0 || tr.Failed() != 2 {
		t.Errorf("in flight %d, failed %d; want 0, 2", tr.InFlight(), tr.Failed())
	}
}

func TestTrackerPublishError(t *testing.T) {
	t.Parallel()
	var log errorLog
	tr := inflight.New(inflight.Config{Max: 1, OnError: log.add})
	boom := errors.New("boom")
	for range 3 {
		if tr.Go("rec", func() (jetstream.PubAckFuture, error) { return nil, boom }) {
			t.Fatal("a failed publish counted as started")
		}
	}
	if tr.InFlight() != 0 || tr.Failed() != 3 || log.count(boom) != 3 {
		t.Errorf("in flight %d, failed %d, reported %d; want 0, 3, 3", tr.InFlight(), tr.Failed(), log.count(boom))
	}
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestTrackerClose(t *testing.T) {
	t.Parallel()
	stream, publish := setup(t)
	var log errorLog
	tr := inflight.New(inflight.Config{Max: 4, Timeout: time.Minute, OnError: log.add})
	if !tr.Go("rec", publish(1)) {
		t.Fatal("refused")
	}
	// Close waits for the publish in flight...
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := tr.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with a publish in flight = %v, want the context's deadline", err)
	}
	// ...refuses new ones...
	if tr.Go("rec", publish(2)) || log.count(inflight.ErrClosed) != 1 {
		t.Error("a publish was started after Close")
	}
	// ...and returns once it is acknowledged.
	waitfor.True(t, "the publish to arrive", func() bool { return stream.count() == 1 })
	stream.ackAll(t)
	if err := tr.Close(context.Background()); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
