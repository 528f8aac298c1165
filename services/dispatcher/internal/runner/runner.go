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
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/services/dispatcher/internal/delivery"
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
}

// WithDefaults fills unset fields.
func (c Config) WithDefaults() Config {
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 10 * time.Second
	}
	if c.FetchWait == 0 {
		c.FetchWait = 2 * time.Second
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
	return nil
}

// ConsumerName is the durable consumer of a destination.
func ConsumerName(destination string) string { return "dispatcher-" + destination }

// metadataKey marks consumers the dispatcher owns, so that it can remove
// the consumer of a destination that left the configuration.
const metadataKey = "switchyard_destination"

// Dispatcher delivers events to every configured destination.
type Dispatcher struct {
	cfg     Config
	js      jetstream.JetStream
	audit   *auditlog.Emitter
	metrics *metrics
	dests   []*destination
}

// New builds a dispatcher; Run starts it.
func New(js jetstream.JetStream, audit *auditlog.Emitter, cfg Config) (*Dispatcher, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Dispatcher{cfg: cfg, js: js, audit: audit, metrics: newMetrics(cfg.Registerer)}
	for _, dc := range cfg.Destinations {
		d.dests = append(d.dests, newDestination(d, dc))
	}
	return d, nil
}

// ConsumerConfig is the JetStream consumer for a destination.
func ConsumerConfig(dc config.Destination) jetstream.ConsumerConfig {
	backoff := dc.Retry.ConsumerBackoff()
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
		MaxAckPending: dc.MaxAckPending,
		// Pull requests are sized by free workers, so a few at once suffice.
		MaxWaiting: 512,
		Metadata:   map[string]string{metadataKey: dc.Name},
	}
}

// Provision creates or updates every destination's consumer and removes the
// consumers of destinations no longer configured.
func (d *Dispatcher) Provision(ctx context.Context) error {
	want := map[string]bool{}
	for _, dest := range d.dests {
		cc := ConsumerConfig(dest.cfg)
		want[cc.Durable] = true
		cons, err := d.js.CreateOrUpdateConsumer(ctx, natsx.StreamEvents, cc)
		if err != nil {
			return fmt.Errorf("create or update consumer for destination %q: %w", dest.cfg.Name, err)
		}
		dest.consumer = cons
	}
	stream, err := d.js.Stream(ctx, natsx.StreamEvents)
	if err != nil {
		return fmt.Errorf("open stream %s: %w", natsx.StreamEvents, err)
	}
	lister := stream.ListConsumers(ctx)
	var stale []string
	for info := range lister.Info() {
		if name, ok := info.Config.Metadata[metadataKey]; ok && !want[info.Name] {
			stale = append(stale, info.Name)
			d.cfg.Logger.InfoContext(ctx, "removing the consumer of a destination no longer configured",
				slog.String("destination", name), slog.String("consumer", info.Name),
				slog.Uint64("pending_events_dropped", info.NumPending), slog.Int("in_flight_dropped", info.NumAckPending))
		}
	}
	if err := lister.Err(); err != nil {
		return fmt.Errorf("list consumers: %w", err)
	}
	for _, name := range stale {
		if err := d.js.DeleteConsumer(ctx, natsx.StreamEvents, name); err != nil && !natsx.IsNotFound(err) {
			return fmt.Errorf("delete consumer %s: %w", name, err)
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
	for _, dest := range d.dests {
		g.Go(func() error { return dest.run(gctx) })
	}
	d.cfg.Logger.InfoContext(ctx, "dispatcher started", slog.Any("destinations", slices.Sorted(maps.Keys(d.names()))))
	return g.Wait()
}

func (d *Dispatcher) names() map[string]bool {
	m := map[string]bool{}
	for _, dest := range d.dests {
		m[dest.cfg.Name] = true
	}
	return m
}

// destination is one destination's delivery loop.
type destination struct {
	d        *Dispatcher
	cfg      config.Destination
	client   *delivery.Client
	consumer jetstream.Consumer
	log      *slog.Logger
}

func newDestination(d *Dispatcher, dc config.Destination) *destination {
	headers := map[string]string{}
	for k, v := range dc.Headers {
		headers[k] = v.Reveal()
	}
	return &destination{
		d:   d,
		cfg: dc,
		client: delivery.NewClient(delivery.Target{
			URL:                 dc.URL,
			Timeout:             dc.Timeout.D(),
			Headers:             headers,
			AllowPrivateNetwork: dc.AllowPrivateNetwork,
			MaxConns:            dc.Concurrency,
		}),
		log: d.cfg.Logger.With(slog.String("destination", dc.Name)),
	}
}

// run pulls only as many events as there are free workers, so that no event
// waits in a client-side buffer while its ack wait runs down.
func (dest *destination) run(ctx context.Context) error {
	slots := make(chan struct{}, dest.cfg.Concurrency)
	// Deliveries run on their own context: the run context ending stops
	// fetching, not the requests in flight; those get ShutdownGrace.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	var wg sync.WaitGroup
	release := func() { <-slots }

	failures := 0
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		n := 1
	fill:
		for n < dest.cfg.Concurrency {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break fill
			}
		}
		batch, err := dest.consumer.Fetch(n, jetstream.FetchMaxWait(dest.d.cfg.FetchWait))
		got := 0
		if err == nil {
			for msg := range batch.Messages() {
				got++
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer release()
					dest.handle(hctx, msg)
				}()
			}
			err = batch.Error()
		}
		for range n - got {
			release()
		}
		if err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			failures++
			wait := min(time.Duration(failures)*200*time.Millisecond, 5*time.Second)
			dest.log.WarnContext(ctx, "fetch failed; retrying", slog.Any("error", err), slog.Duration("wait", wait))
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
			continue
		}
		failures = 0
	}

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(dest.d.cfg.ShutdownGrace):
		dest.log.Warn("shutdown grace over; handing in-flight deliveries back to JetStream")
		hcancel()
		<-done
	}
	return nil
}
