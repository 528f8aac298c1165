// Package breaker is the dispatcher's circuit breaker: one circuit per
// destination, shared by every dispatcher replica through a KV bucket.
// Each replica counts its attempts' outcomes and adds them to the shared
// circuit with a compare-and-set; the replica whose write makes a
// transition pauses or resumes the destination's consumer and records the
// transition in the audit log. Replicas follow each other's writes through
// a watch of the bucket. Which attempts may be sent (admission, the
// half-open probe's lease) is the dispatcher's: it reads the circuit
// through Breaker.View.
package breaker

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
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/destinations"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// KVBucket is the KV bucket holding every destination's circuit, under the
// destination's name; pkg/topology declares it (Topology.Breakers).
const KVBucket = topology.BreakerBucket

// auditTimeout bounds waiting for one CircuitChanged record to be stored.
const auditTimeout = 5 * time.Second

// Metrics are the breaker's metrics, registered by the dispatcher.
type Metrics struct {
	// State is the circuit state by destination: 0 closed, 1 open, 2
	// half-open.
	State *prometheus.GaugeVec
	// Changes counts the transitions this replica made, by destination and
	// new state ("to").
	Changes *prometheus.CounterVec
}

// Config is what the breakers of one dispatcher replica share.
type Config struct {
	// JS pauses and resumes the destinations' consumers and holds the
	// bucket. Required.
	JS jetstream.JetStream
	// Audit records the transitions. Required.
	Audit *auditlog.Emitter
	// Logger is required.
	Logger *slog.Logger
	// Sync is how often successes are added to the shared circuit;
	// failures and probe results are added at once. Required.
	Sync time.Duration
	// Metrics are required.
	Metrics Metrics
}

// Set is the circuit breakers of one dispatcher replica, one per
// destination whose breaker is enabled, and the bucket they share.
type Set struct {
	cfg Config
	// kv is the bucket, opened by Provision.
	kv     jetstream.KeyValue
	byName map[string]*Breaker
}

// NewSet returns an empty set; Provision opens its bucket.
func NewSet(cfg Config) *Set {
	return &Set{cfg: cfg, byName: map[string]*Breaker{}}
}

// Add makes the breaker of a destination, logging with log.
func (s *Set) Add(destination string, p Policy, log *slog.Logger) *Breaker {
	b := &Breaker{set: s, dest: destination, policy: p, log: log, changed: make(chan struct{}), wake: make(chan struct{}, 1)}
	b.cur.normalize()
	s.byName[destination] = b
	return b
}

// Provision creates or updates the bucket as declared (pkg/topology's
// Topology.Breakers). Each breaker's Reload reads its circuit from it
// afterwards.
func (s *Set) Provision(ctx context.Context, bucket jetstream.KeyValueConfig) error {
	kv, err := s.cfg.JS.CreateOrUpdateKeyValue(ctx, bucket)
	if err != nil {
		return fmt.Errorf("create or update KV bucket %s: %w", KVBucket, err)
	}
	s.kv = kv
	return nil
}

// Run writes each breaker's outcomes and follows the other replicas'
// writes until ctx ends; then it writes what is pending once more.
func (s *Set) Run(ctx context.Context) {
	if len(s.byName) == 0 {
		return
	}
	var g errgroup.Group
	for _, b := range s.byName {
		g.Go(func() error { b.run(ctx); return nil })
	}
	g.Go(func() error { s.watch(ctx); return nil })
	_ = g.Wait()
}

// Prune removes a destination's circuit from the bucket (the destination
// is gone from every replica's configuration). A missing bucket or key is
// not an error.
func Prune(ctx context.Context, js jetstream.JetStream, destination string) error {
	kv, err := js.KeyValue(ctx, KVBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open KV bucket %s: %w", KVBucket, err)
	}
	if err := kv.Purge(ctx, destination); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("remove the circuit breaker state of %s: %w", destination, err)
	}
	return nil
}

// Breaker is this replica's handle on one destination's shared circuit: a
// cached copy kept current by the bucket watcher, the outcomes not yet
// written, and the compare-and-set that writes them.
type Breaker struct {
	set    *Set
	dest   string
	policy Policy
	log    *slog.Logger

	mu      sync.Mutex
	cur     Circuit
	rev     uint64
	changed chan struct{} // closed and replaced on every change of cur
	pending tally
	wake    chan struct{}

	// recordedAgain is the time of the last transition recorded again
	// (RecordAgain; one goroutine).
	recordedAgain time.Time
}

// Policy is the breaker's configuration.
func (b *Breaker) Policy() Policy { return b.policy }

// View returns the cached circuit and a channel closed when it changes.
func (b *Breaker) View() (Circuit, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur, b.changed
}

// observe stores a newer revision of the circuit (from the watcher or a
// write of this replica).
func (b *Breaker) observe(c Circuit, rev uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if rev <= b.rev {
		return
	}
	c.normalize()
	b.cur, b.rev = c, rev
	close(b.changed)
	b.changed = make(chan struct{})
	b.set.cfg.Metrics.State.WithLabelValues(b.dest).Set(circuitGauge(c.State))
}

// Record counts an attempt's outcome. Retryable failures count against the
// partner; every other answer (delivered, or a permanent 4xx) shows it up.
// The handler writes failures and probe results itself (Flush); the first
// success after failures is written at once by run; other successes are
// batched (Config.Sync).
func (b *Breaker) Record(failed bool, errText string, probe bool) {
	b.mu.Lock()
	b.pending.add(failed, errText, probe)
	urgent := b.cur.Consecutive > 0 || b.cur.State != switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED
	b.mu.Unlock()
	if urgent && !failed && !probe {
		b.poke()
	}
}

func (b *Breaker) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// run writes pending outcomes until ctx ends, then once more.
func (b *Breaker) run(ctx context.Context) {
	tick := time.NewTicker(b.set.cfg.Sync)
	defer tick.Stop()
	for {
		select {
		case <-b.wake:
		case <-tick.C:
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			b.Flush(fctx)
			cancel()
			return
		}
		b.Flush(ctx)
	}
}

// Flush adds the outcomes recorded so far to the shared circuit; what
// cannot be written is kept for the next try.
func (b *Breaker) Flush(ctx context.Context) {
	b.mu.Lock()
	t := b.pending
	b.pending = tally{}
	b.mu.Unlock()
	if t.empty() {
		return
	}
	err := b.Update(ctx, func(c *Circuit, now time.Time) string { return c.apply(t, b.policy, now) })
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

// Update applies fn to the shared circuit with compare-and-set, retrying
// on conflict with the latest revision. The replica whose write makes a
// transition records it and pauses or resumes the consumer: exactly one
// replica acts on each transition.
// fn returns a description of the transition it made, or "".
func (b *Breaker) Update(ctx context.Context, fn func(c *Circuit, now time.Time) string) error {
	for range 50 {
		b.mu.Lock()
		before, rev := b.cur, b.rev
		b.mu.Unlock()
		after := before
		after.Buckets = append([]Slot(nil), before.Buckets...)
		now := time.Now()
		transition := fn(&after, now)
		if after.State != before.State {
			ratio, n := before.ratio(b.policy, now)
			after.Change = &Change{From: before.State, At: now, Consecutive: max(before.Consecutive, after.Consecutive),
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
		newRev, err := b.set.kv.Update(ctx, b.dest, data, rev)
		if errors.Is(err, jetstream.ErrKeyExists) {
			// Another replica wrote first: start again from its state.
			if err := b.Reload(ctx); err != nil {
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

// Reload reads the latest circuit from the bucket.
func (b *Breaker) Reload(ctx context.Context) error {
	e, err := b.set.kv.Get(ctx, b.dest)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read circuit of %s: %w", b.dest, err)
	}
	c, err := Decode(e.Value())
	if err != nil {
		return fmt.Errorf("decode circuit of %s: %w", b.dest, err)
	}
	b.observe(c, e.Revision())
	return nil
}

// transitioned carries out a state change this replica wrote: pause or
// resume the consumer, record it, count it.
func (b *Breaker) transitioned(ctx context.Context, from, to Circuit) {
	consumer := destinations.ConsumerName(b.dest)
	var err error
	switch to.State {
	case switchyardv1.CircuitState_CIRCUIT_STATE_OPEN:
		// The server stops handing out this destination's events: no
		// attempt is burned while the partner is down. The pause ends by
		// itself at OpenUntil even if no replica is left to resume it.
		_, err = b.set.cfg.JS.PauseConsumer(ctx, natsx.StreamEvents, consumer, to.OpenUntil)
	default:
		_, err = b.set.cfg.JS.ResumeConsumer(ctx, natsx.StreamEvents, consumer)
	}
	if err != nil {
		b.log.ErrorContext(ctx, "pause or resume of the destination's consumer failed", slog.String("circuit", to.State.String()), slog.Any("error", err))
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	if err := b.set.cfg.Audit.Emit(actx, circuitRecord(b.dest, to)); err != nil {
		// Every replica records the current state again each backlog
		// interval (same id), so the audit log and the notifier catch up.
		b.log.ErrorContext(ctx, "circuit change not recorded in the audit log yet", slog.Any("error", err))
	}
	b.set.cfg.Metrics.Changes.WithLabelValues(b.dest, StateName(to.State)).Inc()
	level := slog.LevelWarn
	if to.State == switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED {
		level = slog.LevelInfo
	}
	b.log.Log(ctx, level, "circuit "+StateName(to.State), slog.String("from", StateName(from.State)),
		slog.String("reason", to.Reason), slog.String("last_error", to.LastError), slog.Time("open_until", to.OpenUntil))
}

// circuitRecord is the CircuitChanged record of the transition into c's
// state. It is made from the shared state alone, so that the replica that
// made the transition and any replica recording it again produce the same
// record: same id (one per destination and transition), same time.
func circuitRecord(dest string, c Circuit) *switchyardv1.AuditRecord {
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
		Id:     fmt.Sprintf("circuit:%s:%s:%d", dest, StateName(c.State), ch.At.UnixMilli()),
		Time:   timestamppb.New(ch.At),
		Detail: &switchyardv1.AuditRecord_CircuitChanged{CircuitChanged: cc},
	}
}

// StateName is a circuit state as metrics and logs name it: closed, open
// or half_open.
func StateName(s switchyardv1.CircuitState) string {
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

// recentClose is how long after it a closing transition is still recorded
// again (once by each replica).
const recentClose = time.Hour

// RecordAgain records the transition into the current state again (the
// same CircuitChanged record, same id): each time it is called while the
// breaker is open or half-open, and once after it closed. The audit log
// keeps one copy and the notifier merges by the record's own time, so
// repeats change nothing, and a lost record is made good by the next call.
// The dispatcher calls it each backlog interval.
func (b *Breaker) RecordAgain(ctx context.Context) {
	c, _ := b.View()
	if c.Change == nil {
		return
	}
	if c.State == switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED &&
		(c.Change.At.Equal(b.recordedAgain) || time.Since(c.Change.At) > recentClose) {
		return
	}
	actx, cancel := context.WithTimeout(ctx, auditTimeout)
	defer cancel()
	if err := b.set.cfg.Audit.Emit(actx, circuitRecord(b.dest, c)); err != nil {
		if ctx.Err() == nil {
			b.log.WarnContext(ctx, "circuit state not recorded again", slog.Any("error", err))
		}
		return
	}
	b.recordedAgain = c.Change.At
}

// watch keeps every breaker's cached circuit current until ctx ends,
// starting the watch again if it stops.
func (s *Set) watch(ctx context.Context) {
	for ctx.Err() == nil {
		if err := s.watchOnce(ctx); err != nil {
			s.cfg.Logger.WarnContext(ctx, "circuit breaker watch stopped; starting it again", slog.Any("error", err))
		}
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
}

func (s *Set) watchOnce(ctx context.Context) error {
	w, err := s.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch %s: %w", KVBucket, err)
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
			b := s.byName[e.Key()]
			if b == nil {
				continue
			}
			var c Circuit
			if e.Operation() == jetstream.KeyValuePut {
				var err error
				if c, err = Decode(e.Value()); err != nil {
					s.cfg.Logger.WarnContext(ctx, "unreadable circuit state ignored", slog.String("destination", e.Key()), slog.Any("error", err))
					continue
				}
			}
			b.observe(c, e.Revision())
		}
	}
}
