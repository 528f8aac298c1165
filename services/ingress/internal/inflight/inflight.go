// Package inflight bounds the asynchronous JetStream publishes a server
// makes for its own bookkeeping (audit records, idempotency records) and
// reports how they end. A request never waits for one: when the bound is
// reached, for instance during a NATS outage, further publishes are dropped
// and counted instead of piling up goroutines and memory.
package inflight

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrFull is reported for a publish dropped because the bound was reached.
var ErrFull = errors.New("too many publishes in flight")

// ErrTimeout is reported for a publish whose acknowledgement did not arrive
// within the timeout.
var ErrTimeout = errors.New("no acknowledgement in time")

// ErrClosed is reported for a publish attempted after Close.
var ErrClosed = errors.New("closed")

// Config configures a Tracker.
type Config struct {
	// Max is the most publishes in flight. Default 1024.
	Max int
	// Timeout bounds the wait for one acknowledgement. Default 10s.
	Timeout time.Duration
	// OnError, if set, is called (from the tracker's goroutine, or from
	// Go's caller for ErrFull and publish errors) for each publish that
	// failed; what is Go's label for it.
	OnError func(what string, err error)
}

// Tracker bounds and watches asynchronous publishes. One goroutine waits
// for the acknowledgements in order; publishes complete roughly in order,
// so a slow one holds up the reporting of the others only, never a request.
type Tracker struct {
	cfg     Config
	slots   chan struct{}
	pending chan waiting
	done    chan struct{}

	closeOnce sync.Once
	mu        sync.RWMutex // guards closed against a send on pending
	closed    bool

	dropped atomic.Int64
	failed  atomic.Int64
}

type waiting struct {
	what     string
	f        jetstream.PubAckFuture
	deadline time.Time
}

// New starts a Tracker; Close stops it.
func New(cfg Config) *Tracker {
	if cfg.Max <= 0 {
		cfg.Max = 1024
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	t := &Tracker{
		cfg:     cfg,
		slots:   make(chan struct{}, cfg.Max),
		pending: make(chan waiting, cfg.Max),
		done:    make(chan struct{}),
	}
	go t.watch()
	return t
}

// Go starts publish if fewer than Max publishes are in flight and returns
// whether it did; a dropped or failed publish is reported to OnError.
func (t *Tracker) Go(what string, publish func() (jetstream.PubAckFuture, error)) bool {
	select {
	case t.slots <- struct{}{}:
	default:
		t.dropped.Add(1)
		t.report(what, ErrFull)
		return false
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		<-t.slots
		t.report(what, ErrClosed)
		return false
	}
	f, err := publish()
	if err != nil {
		<-t.slots
		t.failed.Add(1)
		t.report(what, err)
		return false
	}
	// There is room: every waiting entry holds a slot.
	t.pending <- waiting{what: what, f: f, deadline: time.Now().Add(t.cfg.Timeout)}
	return true
}

func (t *Tracker) watch() {
	defer close(t.done)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for w := range t.pending {
		timer.Reset(time.Until(w.deadline))
		select {
		case <-w.f.Ok():
		case err := <-w.f.Err():
			t.failed.Add(1)
			t.report(w.what, err)
		case <-timer.C:
			t.failed.Add(1)
			t.report(w.what, fmt.Errorf("%w (%s)", ErrTimeout, t.cfg.Timeout))
		}
		<-t.slots
	}
}

func (t *Tracker) report(what string, err error) {
	if t.cfg.OnError != nil {
		t.cfg.OnError(what, err)
	}
}

// InFlight is the number of publishes not yet acknowledged.
func (t *Tracker) InFlight() int { return len(t.slots) }

// Dropped is the number of publishes refused because the bound was reached.
func (t *Tracker) Dropped() int64 { return t.dropped.Load() }

// Failed is the number of publishes that failed or timed out.
func (t *Tracker) Failed() int64 { return t.failed.Load() }

// Close refuses further publishes and waits, until ctx is done, for those
// in flight to finish.
func (t *Tracker) Close(ctx context.Context) error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		close(t.pending)
		t.mu.Unlock()
	})
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%d publishes still in flight: %w", t.InFlight(), ctx.Err())
	}
}
