package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// BreakerBucket is the KV bucket holding every destination's circuit.
const BreakerBucket = topology.BreakerBucket

// breaker is this replica's handle on one destination's shared circuit: a
// cached copy kept current by the bucket watcher, the outcomes not yet
// written, and the compare-and-set that writes them.
type breaker struct {
	d      *Dispatcher
	dest   string
	policy policy
	log    *slog.Logger

	mu      sync.Mutex
	cur     circuit
	rev     uint64
	changed chan struct{} // closed and replaced on every change of cur
	pending tally
	wake    chan struct{}
}

func newBreaker(d *Dispatcher, dest string, p policy, log *slog.Logger) *breaker {
	b := &breaker{d: d, dest: dest, policy: p, log: log, changed: make(chan struct{}), wake: make(chan struct{}, 1)}
	b.cur.normalize()
	return b
}

// view returns the cached circuit and a channel closed when it changes.
func (b *breaker) view() (circuit, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur, b.changed
}

// observe stores a newer revision of the circuit (from the watcher or a
// write of this replica).
func (b *breaker) observe(c circuit, rev uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if rev <= b.rev {
		return
	}
	c.normalize()
	b.cur, b.rev = c, rev
	close(b.changed)
	b.changed = make(chan struct{})
	b.d.metrics.circuitState.WithLabelValues(b.dest).Set(circuitGauge(c.State))
}

// record counts an attempt's outcome. Retryable failures count against the
// partner; every other answer (delivered, or a permanent 4xx) shows it up.
// The handler writes failures and probe results itself (flush); the first
// success after failures is written at once by run; other successes are
// batched (Config.BreakerSync).
func (b *breaker) record(failed bool, errText string, probe bool) {
	b.mu.Lock()
	b.pending.add(failed, errText, probe)
	urgent := b.cur.Consecutive > 0 || b.cur.State != switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED
	b.mu.Unlock()
	if urgent && !failed && !probe {
		b.poke()
	}
}

func (b *breaker) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// run writes pending outcomes until ctx ends, then once more.
func (b *breaker) run(ctx context.Context) {
	tick := time.NewTicker(b.d.cfg.BreakerSync)
	defer tick.Stop()
	for {
		select {
		case <-b.wake:
		case <-tick.C:
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			b.flush(fctx)
			cancel()
			return
		}
		b.flush(ctx)
	}
}

func (b *breaker) flush(ctx context.Context) {
	b.mu.Lock()
	t := b.pending
	b.pending = tally{}
	b.mu.Unlock()
	if t.empty() {
		return
	}
	err := b.update(ctx, func(c *circuit, now time.Time) string { return c.apply(t, b.policy, now) })
	if err != nil {
		b.log.WarnContext(ctx, "circuit breaker state not updated; outcomes kept for the next try", slog.Any("error", err))
		b.mu.Lock()
		b.pending.merge(t)
		b.mu.Unlock()
	}
}

// merge puts back a tally whose write failed; later outcomes come after it.
func (t *tally) merge(earlier tally) {
	later := *t
	*t = earlier
	t.ok += later.ok
	t.fail += later.fail
	if later.sawOK {
		t.sawOK, t.trailing = true, later.trailing
	} else {
		t.trailing += later.fail
	}
	if later.probe != nil {
		t.probe = later.probe
	}
	if later.lastError != "" {
		t.lastError = later.lastError
	}
}

// errNoChange ends an update that has nothing to write.
var errNoChange = errors.New("no change")

// update applies fn to the shared circuit with compare-and-set, retrying
// on conflict with the latest revision. The replica whose write makes a
// transition records it and pauses or resumes the consumer: exactly one
// replica acts on each transition.
func (b *breaker) update(ctx context.Context, fn func(c *circuit, now time.Time) string) error {
	for range 50 {
		b.mu.Lock()
		before, rev := b.cur, b.rev
		b.mu.Unlock()
		after := before
		after.Buckets = append([]bucket(nil), before.Buckets...)
		now := time.Now()
		transition := fn(&after, now)
		if after.State != before.State {
			ratio, n := before.ratio(b.policy, now)
			after.Change = &change{From: before.State, At: now, Consecutive: max(before.Consecutive, after.Consecutive),
				Ratio: ratio, Attempts: n, LastError: after.LastError}
		}
		old, _ := json.Marshal(before)
		data, err := json.Marshal(after)
		if err != nil {
			return fmt.Errorf("encode circuit: %w", err)
		}
		if bytes.Equal(old, data) {
			return nil
		}
		newRev, err := b.d.breakers.Update(ctx, b.dest, data, rev)
		if errors.Is(err, jetstream.ErrKeyExists) {
			// Another replica wrote first: start again from its state.
			if err := b.reload(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("write circuit of %s: %w", b.dest, err)
		}
		b.observe(after, newRev)
		if transition != "" && after.State != before.State {
			b.transitioned(ctx, before, after)
		}
		return nil
	}
	return fmt.Errorf("write circuit of %s: too many concurrent writers", b.dest)
}

// reload reads the latest circuit from the bucket.
func (b *breaker) reload(ctx context.Context) error {
	e, err := b.d.breakers.Get(ctx, b.dest)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read circuit of %s: %w", b.dest, err)
	}
	var c circuit
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return fmt.Errorf("decode circuit of %s: %w", b.dest, err)
	}
	b.observe(c, e.Revision())
	return nil
}

// transitioned carries out a state change this replica wrote: pause or
// resume the consumer, record it, count it.
func (b *breaker) transitioned(ctx context.Context, from, to circuit) {
	consumer := ConsumerName(b.dest)
	var err error
	switch to.State {
	case switchyardv1.CircuitState_CIRCUIT_STATE_OPEN:
		// The server stops handing out this destination's events: no
		// attempt is burned while the partner is down. The pause ends by
		// itself at OpenUntil even if no replica is left to resume it.
		_, err = b.d.js.PauseConsumer(ctx, natsx.StreamEvents, consumer, to.OpenUntil)
	default:
		_, err = b.d.js.ResumeConsumer(ctx, natsx.StreamEvents, consumer)
	}
	if err != nil {
		b.log.ErrorContext(ctx, "pause or resume of the destination's consumer failed", slog.String("circuit", to.State.String()), slog.Any("error", err))
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	if err := b.d.audit.Emit(actx, circuitRecord(b.dest, to)); err != nil {
		// Every replica records the current state again each backlog
		// interval (same id), so the audit log and the notifier catch up.
		b.log.ErrorContext(ctx, "circuit change not recorded in the audit log yet", slog.Any("error", err))
	}
	b.d.metrics.circuitChanges.WithLabelValues(b.dest, circuitName(to.State)).Inc()
	level := slog.LevelWarn
	if to.State == switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED {
		level = slog.LevelInfo
	}
	b.log.Log(ctx, level, "circuit "+circuitName(to.State), slog.String("from", circuitName(from.State)),
		slog.String("reason", to.Reason), slog.String("last_error", to.LastError), slog.Time("open_until", to.OpenUntil))
}

// circuitRecord is the CircuitChanged record of the transition into c's
// state. It is made from the shared state alone, so that the replica that
// made the transition and any replica recording it again produce the same
// record: same id (one per destination and transition), same time.
func circuitRecord(dest string, c circuit) *switchyardv1.AuditRecord {
	ch := c.Change
	cc := &switchyardv1.CircuitChanged{
		Destination:         dest,
		From:                ch.From,
		To:                  c.State,
		Reason:              c.Reason,
		ConsecutiveFailures: int32(ch.Consecutive),
		FailureRatio:        ch.Ratio,
		LastError:           ch.LastError,
		WindowAttempts:      int32(ch.Attempts),
	}
	if c.State == switchyardv1.CircuitState_CIRCUIT_STATE_OPEN {
		cc.OpenUntil = timestamppb.New(c.OpenUntil)
	}
	return &switchyardv1.AuditRecord{
		Id:     fmt.Sprintf("circuit:%s:%s:%d", dest, circuitName(c.State), ch.At.UnixMilli()),
		Time:   timestamppb.New(ch.At),
		Detail: &switchyardv1.AuditRecord_CircuitChanged{CircuitChanged: cc},
	}
}

func circuitName(s switchyardv1.CircuitState) string {
	switch s {
	case switchyardv1.CircuitState_CIRCUIT_STATE_OPEN:
		return "open"
	case switchyardv1.CircuitState_CIRCUIT_STATE_HALF_OPEN:
		return "half_open"
	default:
		return "closed"
	}
}

func circuitGauge(s switchyardv1.CircuitState) float64 {
	switch s {
	case switchyardv1.CircuitState_CIRCUIT_STATE_OPEN:
		return 1
	case switchyardv1.CircuitState_CIRCUIT_STATE_HALF_OPEN:
		return 2
	default:
		return 0
	}
}

// probeLease is how long a replica holds the half-open probe without
// renewing it: a fetch plus an attempt, with room to spare.
func (d *Dispatcher) probeLease(timeout time.Duration) time.Duration {
	return d.cfg.FetchWait + timeout + 5*time.Second
}

// watchBreakers keeps every breaker's cached circuit current until ctx
// ends, starting the watch again if it stops.
func (d *Dispatcher) watchBreakers(ctx context.Context, byName map[string]*breaker) error {
	for ctx.Err() == nil {
		if err := d.watchBreakersOnce(ctx, byName); err != nil {
			d.cfg.Logger.WarnContext(ctx, "circuit breaker watch stopped; starting it again", slog.Any("error", err))
		}
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
	return nil
}

func (d *Dispatcher) watchBreakersOnce(ctx context.Context, byName map[string]*breaker) error {
	w, err := d.breakers.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", BreakerBucket, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("the watcher closed")
			}
			if e == nil {
				continue // the end of the initial values
			}
			b := byName[e.Key()]
			if b == nil {
				continue
			}
			var c circuit
			if e.Operation() == jetstream.KeyValuePut {
				if err := json.Unmarshal(e.Value(), &c); err != nil {
					d.cfg.Logger.WarnContext(ctx, "unreadable circuit state ignored", slog.String("destination", e.Key()), slog.Any("error", err))
					continue
				}
			}
			b.observe(c, e.Revision())
		}
	}
}
