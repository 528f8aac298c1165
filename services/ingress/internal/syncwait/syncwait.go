// Package syncwait lets a publish request wait for the first attempt of its
// event at each destination the event routes to. One subscription per
// ingress process listens on its own inbox prefix; each waiting request
// gets a subject under it, which the event carries (pkg/syncreply) and the
// dispatcher replica that makes an attempt publishes the attempt to. The
// waiter never reads Postgres and never polls: the replies come to it, from
// whichever dispatcher replica delivered.
package syncwait

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/switchyard/switchyard/pkg/syncreply"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// Waiter receives the replies of one ingress process.
type Waiter struct {
	prefix string
	sub    *nats.Subscription
	log    *slog.Logger
	next   atomic.Uint64

	mu    sync.Mutex
	waits map[string]*Wait
}

// New subscribes to a new inbox prefix on nc.
func New(nc *nats.Conn, log *slog.Logger) (*Waiter, error) {
	w := &Waiter{prefix: nc.NewRespInbox(), log: log, waits: map[string]*Wait{}}
	sub, err := nc.Subscribe(w.prefix+".*", w.receive)
	if err != nil {
		return nil, fmt.Errorf("syncwait: subscribe to the reply inbox: %w", err)
	}
	// The server knows the subscription once Flush returns: a reply sent
	// right after New (from another connection) is not dropped.
	if err := nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("syncwait: subscribe to the reply inbox: %w", err)
	}
	w.sub = sub
	return w, nil
}

// Close stops listening.
func (w *Waiter) Close() error { return w.sub.Unsubscribe() }

// Waiting is the number of requests waiting.
func (w *Waiter) Waiting() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.waits)
}

func (w *Waiter) receive(m *nats.Msg) {
	w.mu.Lock()
	wt := w.waits[m.Subject]
	w.mu.Unlock()
	if wt == nil {
		return // the request stopped waiting
	}
	r, err := syncreply.Decode(m.Data)
	if err != nil {
		w.log.Warn("an undecodable delivery reply was dropped", slog.Any("error", err))
		return
	}
	select {
	case wt.ch <- r:
	default: // more replies than asked for: the first ones count
	}
}

// Wait is one request waiting for its event's attempts.
type Wait struct {
	// Subject is the reply subject the event must carry.
	Subject string
	w       *Waiter
	want    []string
	ch      chan *switchyardv1.DeliveryReply
}

// Start registers a request that waits for the given destinations. It
// must be called before the event is published, so that no reply comes
// before anyone listens; Stop ends it.
func (w *Waiter) Start(destinations []string) *Wait {
	wt := &Wait{
		Subject: w.prefix + "." + strconv.FormatUint(w.next.Add(1), 36),
		w:       w, want: destinations,
		ch: make(chan *switchyardv1.DeliveryReply, 2*len(destinations)+4),
	}
	w.mu.Lock()
	w.waits[wt.Subject] = wt
	w.mu.Unlock()
	return wt
}

// Stop unregisters the request; replies that come later are dropped.
func (wt *Wait) Stop() {
	wt.w.mu.Lock()
	delete(wt.w.waits, wt.Subject)
	wt.w.mu.Unlock()
}

// Collect returns the first reply of each destination waited for, by
// destination, once every destination replied or ctx ended, whichever is
// first: destinations missing from the result are still pending.
func (wt *Wait) Collect(ctx context.Context) map[string]*switchyardv1.DeliveryReply {
	got := make(map[string]*switchyardv1.DeliveryReply, len(wt.want))
	wanted := make(map[string]bool, len(wt.want))
	for _, d := range wt.want {
		wanted[d] = true
	}
	for len(got) < len(wanted) {
		select {
		case r := <-wt.ch:
			d := r.GetAttempt().GetDestination()
			if wanted[d] && got[d] == nil {
				got[d] = r
			}
		case <-ctx.Done():
			return got
		}
	}
	return got
}
