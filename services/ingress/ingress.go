// Package ingress is Switchyard's webhook receiver: partners POST to
// /webhooks/{source}; the request is verified with the source's signature
// scheme, stored in the EVENTS stream on webhooks.<source>.<type>, and
// answered 2xx only after JetStream acknowledged it. A redelivered webhook
// (same delivery id) is answered 2xx and stored once.
package ingress

import (
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/auditlog"
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
