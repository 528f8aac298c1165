// Package dispatcher delivers events from JetStream to partner HTTP APIs:
// one durable consumer and one worker pool per destination, retries by
// ack-wait redelivery on the destination's schedule, dead letters for what
// still fails.
package dispatcher

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/services/dispatcher/internal/runner"
)

// Config configures the dispatcher; see the field docs.
type Config = runner.Config

// Dispatcher delivers events to every configured destination.
type Dispatcher = runner.Dispatcher

// New returns a Dispatcher that reads EVENTS through js and audits through
// audit.
func New(js jetstream.JetStream, audit *auditlog.Emitter, cfg Config) (*Dispatcher, error) {
	return runner.New(js, audit, cfg)
}

// ConsumerName is the durable consumer that delivers to a destination.
func ConsumerName(destination string) string { return runner.ConsumerName(destination) }

// Prune removes the consumer and the circuit breaker state of a destination
// that no replica is configured with any more, giving up the events waiting
// in the consumer. destinations.Unconfigured finds them; `switchyard
// destinations prune` is the command.
func Prune(ctx context.Context, js jetstream.JetStream, destination string) error {
	return runner.Prune(ctx, js, destination)
}
