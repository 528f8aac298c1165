// Package dispatcher delivers events from JetStream to partner HTTP APIs:
// one durable consumer and one worker pool per destination, retries by
// ack-wait redelivery on the destination's schedule, dead letters for what
// still fails.
//
// Every process builds it the same way: New(js, emitter, FromConfig(cfg,
// log, registry)).
package dispatcher

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/telemetry"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/dispatcher/internal/runner"
)

// Config is what the dispatcher is built from: the sections of the
// configuration file it reads, and what the process injects.
type Config struct {
	// Destinations are the partner APIs to deliver to (destinations).
	Destinations []config.Destination
	// Topology sizes the circuit breaker bucket (nats.replicas).
	Topology topology.Topology
	// Logger is required.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
	// Tracing makes one span per delivery attempt, continuing the trace
	// in the event's headers, and sends it on as traceparent; nil is off
	// (svcboot.Env.Tracing).
	Tracing *telemetry.Tracing
	// Tuning holds timings that are not in the configuration file.
	// FromConfig leaves it zero: the dispatcher's own values.
	Tuning Tuning
}

// Tuning holds the dispatcher's internal timings; tests shorten them. A
// zero field takes the dispatcher's own value.
type Tuning struct {
	// FetchWait is how long one pull request waits for events; stopping
	// takes up to this long.
	FetchWait time.Duration
	// ShutdownGrace is how long deliveries in flight may run after Run's
	// context ends; the rest are handed back to JetStream.
	ShutdownGrace time.Duration
}

// FromConfig is the dispatcher's part of a loaded configuration.
func FromConfig(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) Config {
	return Config{
		Destinations: cfg.Destinations,
		Topology:     topology.FromConfig(cfg),
		Logger:       log,
		Registerer:   reg,
	}
}

// WithDefaults returns c with every unset setting at the configuration
// file's default (config.Config.WithDefaults, the one place they are
// written).
func (c Config) WithDefaults() Config {
	c.Destinations = config.Config{Destinations: c.Destinations}.WithDefaults().Destinations
	return c
}

// Validate checks what the service needs besides a valid configuration
// file (config.Load checks the file's rules, the one place they are
// written): the injected logger, a usable topology.
func (c Config) Validate() error {
	if c.Logger == nil {
		return errors.New("dispatcher: Config.Logger is required")
	}
	if err := c.Topology.Validate(); err != nil {
		return err
	}
	return nil
}

// Dispatcher delivers events to every configured destination.
type Dispatcher struct{ r *runner.Dispatcher }

// New returns a Dispatcher that reads EVENTS through js and audits through
// audit; Run starts it.
func New(js jetstream.JetStream, audit *auditlog.Emitter, cfg Config) (*Dispatcher, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r, err := runner.New(js, audit, runner.Config{
		Destinations:  cfg.Destinations,
		Topology:      cfg.Topology,
		Logger:        cfg.Logger,
		Registerer:    cfg.Registerer,
		Tracing:       cfg.Tracing,
		FetchWait:     cfg.Tuning.FetchWait,
		ShutdownGrace: cfg.Tuning.ShutdownGrace,
	})
	if err != nil {
		return nil, err
	}
	return &Dispatcher{r: r}, nil
}

// Provision creates or updates every destination's consumer, the circuit
// breaker bucket and the dead-letter reconciler's consumer (Run does it
// first). It never removes a consumer.
func (d *Dispatcher) Provision(ctx context.Context) error { return d.r.Provision(ctx) }

// Run provisions, then delivers until ctx is done; deliveries in flight
// then get the shutdown grace to finish.
func (d *Dispatcher) Run(ctx context.Context) error { return d.r.Run(ctx) }

// ConsumerName is the durable consumer that delivers to a destination.
func ConsumerName(destination string) string { return runner.ConsumerName(destination) }

// Prune removes the consumer and the circuit breaker state of a destination
// that no replica is configured with any more, giving up the events waiting
// in the consumer. destinations.Unconfigured finds them; `switchyard
// destinations prune` is the command.
func Prune(ctx context.Context, js jetstream.JetStream, destination string) error {
	return runner.Prune(ctx, js, destination)
}
