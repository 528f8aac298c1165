// Package ingress is Switchyard's entry point for events: partners POST
// webhooks to /webhooks/{source}, verified with the source's signature
// scheme and stored in the EVENTS stream on webhooks.<source>.<type>; our
// own services POST events to /v1/events with an API key. Either is
// answered 2xx only after JetStream acknowledged it, and a redelivery (same
// delivery id or Idempotency-Key) is answered 2xx and stored once, within
// the idempotency horizon.
//
// Every process builds it the same way: New(js, emitter, FromConfig(cfg,
// log, registry)).
package ingress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/contracts"
	"github.com/switchyard/switchyard/pkg/telemetry"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/ingress/internal/poll"
	"github.com/switchyard/switchyard/services/ingress/internal/server"
)

// Config is what ingress is built from: the sections of the configuration
// file it reads, and what the process injects.
type Config struct {
	// Ingress is the file's ingress section: listen address, body limits,
	// timeouts, idempotency horizon, API keys, trusted proxies, rejection
	// audit.
	Ingress config.Ingress
	// Sources are the partners that send webhooks, or whose APIs ingress
	// polls (sources).
	Sources []config.Source
	// Destinations route events: a synchronous publish waits for those its
	// event goes to (destinations).
	Destinations []config.Destination
	// Topology sizes the idempotency bucket (nats.replicas).
	Topology topology.Topology
	// Logger is required.
	Logger *slog.Logger
	// Registerer receives the metrics; nil means none.
	Registerer prometheus.Registerer
	// Now is the clock of the signature timestamp tolerance; nil is
	// time.Now.
	Now func() time.Time
	// Tracing starts each stored event's trace (or continues the caller's
	// traceparent) and writes it into the event's headers; nil is off
	// (svcboot.Env.Tracing).
	Tracing *telemetry.Tracing
}

// FromConfig is ingress's part of a loaded configuration.
func FromConfig(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) Config {
	return Config{
		Ingress:      cfg.Ingress,
		Sources:      cfg.Sources,
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
	d := config.Config{Ingress: c.Ingress, Sources: c.Sources, Destinations: c.Destinations}.WithDefaults()
	c.Ingress, c.Sources, c.Destinations = d.Ingress, d.Sources, d.Destinations
	return c
}

// Validate checks what the service needs besides a valid configuration
// file (config.Load checks the file's rules, the one place they are
// written): the injected logger, a usable topology.
func (c Config) Validate() error {
	if c.Logger == nil {
		return errors.New("ingress: Config.Logger is required")
	}
	if err := c.Topology.Validate(); err != nil {
		return err
	}
	return nil
}

// Server is the ingress HTTP server and the poller of the sources that
// send no webhooks.
type Server struct {
	srv    *server.Server
	poller *poll.Poller
}

// New returns a Server that publishes to js and audits through audit; Run
// serves it.
func New(js jetstream.JetStream, audit *auditlog.Emitter, cfg Config) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// An invalid schema stops the start, naming the field and the file.
	set, err := contracts.Compile(config.Config{Sources: cfg.Sources, Ingress: cfg.Ingress})
	if err != nil {
		return nil, fmt.Errorf("ingress: %w", err)
	}
	in := cfg.Ingress
	srv, err := server.New(js, audit, server.Config{
		Contracts:          set,
		Listen:             in.Listen,
		Sources:            cfg.Sources,
		ReadTimeout:        in.ReadTimeout.D(),
		PublishTimeout:     in.PublishTimeout.D(),
		IdempotencyHorizon: in.IdempotencyHorizon.D(),
		Topology:           cfg.Topology,
		APIKeys:            in.APIKeys,
		MaxBody:            int64(in.MaxBody),
		MaxBytesInFlight:   int64(in.MaxBytesInFlight),
		MaxBatch:           in.MaxBatch,
		TrustedProxies:     in.TrustedProxies,
		RejectionAudit:     in.RejectionAudit,
		Destinations:       cfg.Destinations,
		Sync:               in.Sync,
		Logger:             cfg.Logger,
		Registerer:         cfg.Registerer,
		Now:                cfg.Now,
		Tracing:            cfg.Tracing,
	})
	if err != nil {
		return nil, err
	}
	p, err := poll.New(js, srv, poll.Config{
		Sources:    cfg.Sources,
		LeaseTTL:   in.PollLeaseTTL.D(),
		Topology:   cfg.Topology,
		Logger:     cfg.Logger,
		Registerer: cfg.Registerer,
		OnRound:    roundRecorder(audit, cfg.Logger),
	})
	if err != nil {
		_ = srv.Close(context.Background())
		return nil, fmt.Errorf("ingress: %w", err)
	}
	return &Server{srv: srv, poller: p}, nil
}

// roundRecorder records each poll round in the audit log.
func roundRecorder(audit *auditlog.Emitter, log *slog.Logger) func(context.Context, poll.Round) {
	return func(ctx context.Context, r poll.Round) {
		if audit == nil {
			return
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := audit.Emit(actx, r.Record()); err != nil {
			log.WarnContext(ctx, "poll round not recorded in the audit log", slog.String("source", r.Source), slog.Any("error", err))
		}
	}
}

// Provision declares the idempotency bucket and, with polled sources, the
// cursor and lease buckets (Run does it first).
func (s *Server) Provision(ctx context.Context) error {
	if err := s.srv.Provision(ctx); err != nil {
		return err
	}
	return s.poller.Provision(ctx)
}

// Run provisions, then serves and polls until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	if err := s.poller.Provision(ctx); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.srv.Run(gctx) })
	g.Go(func() error { return s.poller.Run(gctx) })
	return g.Wait()
}

// Poll runs the poller alone until ctx is done, for a server served
// through Handler (Run does it itself).
func (s *Server) Poll(ctx context.Context) error { return s.poller.Run(ctx) }

// Polled names the sources this server polls.
func (s *Server) Polled() []string { return s.poller.Sources() }

// Handler is the HTTP handler, for tests and embedding; Provision must
// have run, and Close must be called when done.
func (s *Server) Handler() http.Handler { return s.srv.Handler() }

// Close stops the asynchronous publishers of a server used through Handler
// (Run does it itself), waiting for those in flight until ctx is done.
func (s *Server) Close(ctx context.Context) error { return s.srv.Close(ctx) }
