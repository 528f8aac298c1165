// Package runner is the dispatcher's engine: one durable pull consumer
// and one bounded worker pool per destination. A worker admits an event
// (the circuit breaker may hold it), sends it (internal/delivery), records
// the attempt, and settles the message as settle.Decide says. The parts
// with a life of their own are packages beside it: the circuit breaker
// (internal/breaker), dead-letter storage (internal/deadletter), the
// advisory reconciler (internal/reconcile), backlog reports
// (internal/backlog) and the ids (internal/ids).
//
// Retries are JetStream's: a retryable failure is left unacknowledged and the
// server redelivers it after the consumer's BackOff step for that delivery
// count; MaxDeliver caps the attempts. The dispatcher never sleeps on a
// message and never uses a plain Nak (which would bypass the schedule)
// except to hand a message back at shutdown.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/destinations"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/telemetry"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/dispatcher/internal/breaker"
	"github.com/switchyard/switchyard/services/dispatcher/internal/deadletter"
	"github.com/switchyard/switchyard/services/dispatcher/internal/ids"
	"github.com/switchyard/switchyard/services/dispatcher/internal/reconcile"
)

// Config configures the dispatcher.
type Config struct {
	// Destinations to deliver to; each must be valid (config.Validate).
	Destinations []config.Destination
	// Logger is required.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
	// ShutdownGrace is how long in-flight deliveries may run after Run's
	// context ends; the rest are handed back to JetStream. Default 10s.
	ShutdownGrace time.Duration
	// FetchWait is how long one pull request waits for events. Shutdown
	// takes up to this long. Default 2s.
	FetchWait time.Duration
	// BacklogInterval is how often each destination's backlog is measured
	// and reported (metrics, BacklogReport audit records). Default 30s.
	BacklogInterval time.Duration
	// BreakerSync is how often successes are added to the shared circuit
	// breaker state; failures are added at once. Default 1s.
	BreakerSync time.Duration
	// Topology sizes the circuit breaker bucket (nats.replicas); zero
	// fields take the configuration's defaults.
	Topology topology.Topology
	// Instance names this replica (half-open probe ownership, logs).
	// Default host/pid/random.
	Instance string
	// Tracing makes one span per attempt; nil is off.
	Tracing *telemetry.Tracing
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.FetchWait == 0 {
		c.FetchWait = 2 * time.Second
	}
	if c.BacklogInterval == 0 {
		c.BacklogInterval = 30 * time.Second
	}
	if c.BreakerSync == 0 {
		c.BreakerSync = time.Second
	}
	if c.Instance == "" {
		host, _ := os.Hostname()
		c.Instance = fmt.Sprintf("%s/%d/%s", host, os.Getpid(), nuid.Next()[:8])
	}
	return c
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if c.Logger == nil {
		return errors.New("dispatcher: Config.Logger is required")
	}
	if c.FetchWait < 100*time.Millisecond {
		return errors.New("dispatcher: Config.FetchWait must be at least 100ms")
	}
	if c.BacklogInterval < 100*time.Millisecond {
		return errors.New("dispatcher: Config.BacklogInterval must be at least 100ms")
	}
	if c.BreakerSync < 10*time.Millisecond {
		return errors.New("dispatcher: Config.BreakerSync must be at least 10ms")
	}
	return nil
}

// ConsumerName is the durable consumer of a destination.
func ConsumerName(destination string) string { return destinations.ConsumerName(destination) }

// Dispatcher delivers events to every configured destination.
type Dispatcher struct {
	cfg      Config
	js       jetstream.JetStream
	audit    *auditlog.Emitter
	metrics  *metrics
	dests    []*destination
	breakers *breaker.Set
	// inc is the EVENTS stream the ids name.
	inc         ids.Incarnation
	deadLetters *deadletter.Writer
	reconciler  *reconcile.Reconciler
	// warned are the consumers of unconfigured destinations already
	// warned about (Provision runs more than once in a process).
	warnedMu sync.Mutex
	warned   map[string]bool
}

// New builds a dispatcher; Run starts it.
func New(js jetstream.JetStream, audit *auditlog.Emitter, cfg Config) (*Dispatcher, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// The destinations come from a loaded configuration; applying the
	// defaults again is a no-op there and makes a hand-built one complete.
	all := config.Config{Destinations: cfg.Destinations}.WithDefaults()
	if err := all.Validate(); err != nil {
		return nil, fmt.Errorf("dispatcher: %w", err)
	}
	cfg.Destinations = all.Destinations
	d := &Dispatcher{cfg: cfg, js: js, audit: audit, metrics: newMetrics(cfg.Registerer, cfg.Destinations)}
	d.breakers = breaker.NewSet(breaker.Config{JS: js, Audit: audit, Logger: cfg.Logger, Sync: cfg.BreakerSync, Metrics: d.metrics.breakerMetrics()})
	d.deadLetters = deadletter.NewWriter(js, audit)
	d.reconciler = reconcile.New(reconcile.Config{JS: js, DeadLetters: d.deadLetters, Incarnation: &d.inc, Logger: cfg.Logger,
		FetchWait: cfg.FetchWait, Metrics: d.metrics.reconcileMetrics()})
	for _, dc := range cfg.Destinations {
		dest, err := newDestination(d, dc)
		if err != nil {
			return nil, err
		}
		d.dests = append(d.dests, dest)
	}
	return d, nil
}

// Provision creates or updates every destination's consumer, the circuit
// breaker bucket and the dead-letter reconciler's consumer.
//
// It never removes a consumer. One whose destination is not in this
// configuration may belong to a replica running a newer configuration (a
// rolling deploy), and removing it would give up its pending events and
// the retries it is waiting for; it is named in a warning with its counts,
// and `switchyard destinations prune` removes it when an operator says so.
func (d *Dispatcher) Provision(ctx context.Context) error {
	if err := d.breakers.Provision(ctx, d.cfg.Topology.Breakers().Config); err != nil {
		return err
	}
	if _, err := d.inc.Read(ctx, d.js, d.cfg.Logger); err != nil {
		return err
	}
	for _, dest := range d.dests {
		cc := topology.DestinationConsumer(dest.cfg).Config
		if old, err := d.js.Consumer(ctx, natsx.StreamEvents, cc.Durable); err == nil {
			prev := old.CachedInfo().Config
			// Keep a pause the circuit breaker set: a restart must not send
			// attempts to a partner that is down.
			if p := prev.PauseUntil; p != nil && p.After(time.Now()) {
				cc.PauseUntil = p
			}
			// Where a consumer starts cannot change; a recreated one
			// (after it was deleted) starts where its predecessor stopped.
			cc.DeliverPolicy, cc.OptStartSeq, cc.OptStartTime = prev.DeliverPolicy, prev.OptStartSeq, prev.OptStartTime
		}
		cons, err := d.js.CreateOrUpdateConsumer(ctx, natsx.StreamEvents, cc)
		if err != nil {
			return fmt.Errorf("create or update consumer for destination %q: %w", dest.cfg.Name, err)
		}
		dest.setConsumer(cons)
		if dest.breaker != nil {
			if err := dest.breaker.Reload(ctx); err != nil {
				return err
			}
		}
	}
	rc := d.cfg.Topology.ReconcilerConsumer()
	if _, err := d.js.CreateOrUpdateConsumer(ctx, rc.Stream, rc.Config); err != nil {
		return fmt.Errorf("create or update consumer %s: %w", reconcile.ConsumerName, err)
	}
	orphans, err := destinations.Unconfigured(ctx, d.js, d.cfg.Destinations)
	if err != nil {
		return err
	}
	d.warnedMu.Lock()
	defer d.warnedMu.Unlock()
	if d.warned == nil {
		d.warned = map[string]bool{}
	}
	for _, o := range orphans {
		if d.warned[o.Consumer] {
			continue
		}
		d.warned[o.Consumer] = true
		d.cfg.Logger.WarnContext(ctx, "the consumer of a destination not in this configuration is left alone: another replica may be "+
			"configured with it; once none is, remove it with `switchyard destinations prune`",
			slog.String("destination", o.Destination), slog.String("consumer", o.Consumer),
			slog.Uint64("num_pending", o.NumPending), slog.Int("num_ack_pending", o.NumAckPending))
	}
	return nil
}

// Run provisions the consumers and delivers until ctx is done, then lets
// in-flight deliveries finish within ShutdownGrace.
func (d *Dispatcher) Run(ctx context.Context) error {
	if err := d.provisionPatiently(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, dest := range d.dests {
		g.Go(func() error { return dest.run(gctx) })
	}
	g.Go(func() error { d.breakers.Run(gctx); return nil })
	g.Go(func() error { return d.monitorBacklog(gctx) })
	g.Go(func() error { return d.reconciler.Run(gctx) })
	// Not "dispatcher started": svcboot logs that for the process.
	d.cfg.Logger.InfoContext(ctx, "delivering", slog.Any("destinations", slices.Sorted(maps.Keys(d.names()))),
		slog.String("instance", d.cfg.Instance))
	return g.Wait()
}

// provisionWait bounds how long Run keeps trying to provision before it
// gives up and the process exits.
const provisionWait = 2 * time.Minute

// provisionPatiently runs Provision until it succeeds, for up to
// provisionWait. A replica that starts while a NATS node is gone, or while
// the cluster moves a leader, meets requests that find no responder or
// time out for a few seconds; exiting on the first would turn a node loss
// into a crash loop of every dispatcher that restarts meanwhile.
func (d *Dispatcher) provisionPatiently(ctx context.Context) error {
	deadline := time.Now().Add(provisionWait)
	pause := 200 * time.Millisecond
	for {
		err := d.Provision(ctx)
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		d.cfg.Logger.WarnContext(ctx, "provisioning failed; trying again", slog.Any("error", err), slog.Duration("wait", pause))
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return ctx.Err()
		}
		pause = min(2*pause, 5*time.Second)
	}
}

func (d *Dispatcher) names() map[string]bool {
	m := map[string]bool{}
	for _, dest := range d.dests {
		m[dest.cfg.Name] = true
	}
	return m
}

// Prune removes the consumer of a destination and its circuit breaker
// state: the destination is gone from every replica's configuration. The
// events waiting in the consumer (pending, in flight, waiting for a retry)
// are given up. A replica still configured with the destination would
// recreate the consumer.
func Prune(ctx context.Context, js jetstream.JetStream, destination string) error {
	name := ConsumerName(destination)
	if err := js.DeleteConsumer(ctx, natsx.StreamEvents, name); err != nil && !natsx.IsNotFound(err) {
		return fmt.Errorf("delete consumer %s: %w", name, err)
	}
	return breaker.Prune(ctx, js, destination)
}
