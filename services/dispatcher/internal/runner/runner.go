// Package runner is the dispatcher's engine: one durable pull consumer per
// destination, a bounded worker pool per destination, and the retry and
// dead-letter decisions for each attempt.
//
// Retries are JetStream's: a retryable failure is left unacknowledged and the
// server redelivers it after the consumer's BackOff step for that delivery
// count; MaxDeliver caps the attempts. The dispatcher never sleeps on a
// message and never uses a plain Nak (which would bypass the schedule).
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
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
	// Replicas of the circuit breaker KV bucket (nats.replicas). Default 1.
	Replicas int
	// Instance names this replica (half-open probe ownership, logs).
	// Default host/pid/random.
	Instance string
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
	if c.Replicas == 0 {
		c.Replicas = 1
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
func ConsumerName(destination string) string { return consumerPrefix + destination }

const consumerPrefix = "dispatcher-"

// metadataKey marks consumers the dispatcher owns, so that it can remove
// the consumer of a destination that left the configuration.
const metadataKey = "switchyard_destination"

// Dispatcher delivers events to every configured destination.
type Dispatcher struct {
	cfg      Config
	js       jetstream.JetStream
	audit    *auditlog.Emitter
	metrics  *metrics
	dests    []*destination
	breakers jetstream.KeyValue
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
	d := &Dispatcher{cfg: cfg, js: js, audit: audit, metrics: newMetrics(cfg.Registerer)}
	for _, dc := range cfg.Destinations {
		dest, err := newDestination(d, dc)
		if err != nil {
			return nil, err
		}
		d.dests = append(d.dests, dest)
	}
	return d, nil
}

// ConsumerConfig is the JetStream consumer for a destination.
func ConsumerConfig(dc config.Destination) jetstream.ConsumerConfig {
	backoff := dc.Retry.ConsumerBackoff()
	maxAckPending := dc.MaxAckPending
	if dc.Ordered {
		// The server hands out the next event only when the current one is
		// finished (delivered or dead-lettered), whichever replica has it.
		maxAckPending = 1
	}
	return jetstream.ConsumerConfig{
		Durable:        ConsumerName(dc.Name),
		Description:    "Switchyard dispatcher: deliveries to " + dc.Name,
		FilterSubjects: append(slices.Clone(dc.Subjects), events.ReplaySubject(dc.Name, ">")),
		// A new destination receives events stored from now on, not the
		// stream's history.
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       backoff[0],
		BackOff:       backoff,
		MaxDeliver:    dc.Retry.MaxAttempts,
		MaxAckPending: maxAckPending,
		// Pull requests are sized by free workers, so a few at once suffice.
		MaxWaiting: 512,
		Metadata:   map[string]string{metadataKey: dc.Name},
	}
}

// Provision creates or updates every destination's consumer, the circuit
// breaker bucket and the dead-letter reconciler's consumer, and removes the
// consumers of destinations no longer configured.
func (d *Dispatcher) Provision(ctx context.Context) error {
	kv, err := d.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      BreakerBucket,
		Description: "Switchyard dispatcher: circuit breaker state per destination, shared by every replica",
		History:     1,
		Replicas:    d.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create or update KV bucket %s: %w", BreakerBucket, err)
	}
	d.breakers = kv
	want := map[string]bool{}
	for _, dest := range d.dests {
		cc := ConsumerConfig(dest.cfg)
		want[cc.Durable] = true
		// Keep a pause the circuit breaker set: a restart must not send
		// attempts to a partner that is down.
		if old, err := d.js.Consumer(ctx, natsx.StreamEvents, cc.Durable); err == nil {
			if p := old.CachedInfo().Config.PauseUntil; p != nil && p.After(time.Now()) {
				cc.PauseUntil = p
			}
		}
		cons, err := d.js.CreateOrUpdateConsumer(ctx, natsx.StreamEvents, cc)
		if err != nil {
			return fmt.Errorf("create or update consumer for destination %q: %w", dest.cfg.Name, err)
		}
		dest.consumer = cons
		if dest.breaker != nil {
			if err := dest.breaker.reload(ctx); err != nil {
				return err
			}
		}
	}
	if _, err := d.js.CreateOrUpdateConsumer(ctx, natsx.StreamAdvisories, reconcilerConfig()); err != nil {
		return fmt.Errorf("create or update consumer %s: %w", ReconcilerConsumer, err)
	}
	stream, err := d.js.Stream(ctx, natsx.StreamEvents)
	if err != nil {
		return fmt.Errorf("open stream %s: %w", natsx.StreamEvents, err)
	}
	lister := stream.ListConsumers(ctx)
	var stale []string
	for info := range lister.Info() {
		if name, ok := info.Config.Metadata[metadataKey]; ok && !want[info.Name] {
			stale = append(stale, name)
			d.cfg.Logger.InfoContext(ctx, "removing the consumer of a destination no longer configured",
				slog.String("destination", name), slog.String("consumer", info.Name),
				slog.Uint64("pending_events_dropped", info.NumPending), slog.Int("in_flight_dropped", info.NumAckPending))
		}
	}
	if err := lister.Err(); err != nil {
		return fmt.Errorf("list consumers: %w", err)
	}
	for _, name := range stale {
		if err := d.js.DeleteConsumer(ctx, natsx.StreamEvents, ConsumerName(name)); err != nil && !natsx.IsNotFound(err) {
			return fmt.Errorf("delete consumer %s: %w", ConsumerName(name), err)
		}
		if err := kv.Purge(ctx, name); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("remove circuit of %s: %w", name, err)
		}
	}
	return nil
}

// Run provisions the consumers and delivers until ctx is done, then lets
// in-flight deliveries finish within ShutdownGrace.
func (d *Dispatcher) Run(ctx context.Context) error {
	if err := d.Provision(ctx); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	breakers := map[string]*breaker{}
	for _, dest := range d.dests {
		g.Go(func() error { return dest.run(gctx) })
		if dest.breaker != nil {
			breakers[dest.cfg.Name] = dest.breaker
			g.Go(func() error { dest.breaker.run(gctx); return nil })
		}
	}
	if len(breakers) > 0 {
		g.Go(func() error { return d.watchBreakers(gctx, breakers) })
	}
	g.Go(func() error { return d.monitorBacklog(gctx) })
	g.Go(func() error { return d.reconcile(gctx) })
	d.cfg.Logger.InfoContext(ctx, "dispatcher started", slog.Any("destinations", slices.Sorted(maps.Keys(d.names()))),
		slog.String("instance", d.cfg.Instance))
	return g.Wait()
}

func (d *Dispatcher) names() map[string]bool {
	m := map[string]bool{}
	for _, dest := range d.dests {
		m[dest.cfg.Name] = true
	}
	return m
}
