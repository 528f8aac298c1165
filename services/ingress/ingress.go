// Package ingress is Switchyard's entry point for events: partners POST
// webhooks to /webhooks/{source}, verified with the source's signature
// scheme and stored in the EVENTS stream on webhooks.<source>.<type>; our
// own services POST events to /v1/events with an API key. Either is
// answered 2xx only after JetStream acknowledged it, and a redelivery (same
// delivery id or Idempotency-Key) is answered 2xx and stored once, within
// the idempotency horizon.
package ingress

import (
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/ingress/internal/server"
)

// Config configures the ingress server; see the field docs.
type Config = server.Config

// Server is the ingress HTTP server.
type Server = server.Server

// New returns a Server that publishes to js and audits through audit.
func New(js jetstream.JetStream, audit *auditlog.Emitter, cfg Config) (*Server, error) {
	return server.New(js, audit, cfg)
}

// FromConfig is the server configuration a process derives from the
// configuration file.
func FromConfig(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) Config {
	return Config{
		Listen:             cfg.Ingress.Listen,
		Sources:            cfg.Sources,
		ReadTimeout:        cfg.Ingress.ReadTimeout.D(),
		PublishTimeout:     cfg.Ingress.PublishTimeout.D(),
		IdempotencyHorizon: cfg.Ingress.IdempotencyHorizon.D(),
		Topology:           topology.FromConfig(cfg),
		APIKeys:            cfg.Ingress.APIKeys,
		MaxBody:            int64(cfg.Ingress.MaxBody),
		MaxBatch:           cfg.Ingress.MaxBatch,
		TrustedProxies:     cfg.Ingress.TrustedProxies,
		RejectionAudit:     cfg.Ingress.RejectionAudit,
		Logger:             log,
		Registerer:         reg,
	}
}
