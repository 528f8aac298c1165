// Package destinations is the JetStream side of a delivery destination that
// every Switchyard service shares: the durable consumer on EVENTS through
// which the dispatcher delivers to it (declared by pkg/topology), its name,
// and finding the consumers of destinations no longer configured.
//
// A destination's consumer delivers the events stored after it exists
// (DeliverNew), so it must exist before anything routed to it is accepted.
// Every service therefore creates the consumers that are missing when it
// starts (EnsureConsumers, called by svcboot.Start), whichever service
// starts first. Only creation is shared: updating a consumer in place is
// the dispatcher's (it keeps the breaker's pause and the start position),
// and removing one is an operator's decision (`switchyard destinations
// prune`), never a side effect of a start with another configuration.
package destinations

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/natsx"
)

// ConsumerPrefix starts the name of every destination consumer.
const ConsumerPrefix = "dispatcher-"

// MetadataKey is the consumer metadata key naming the destination; it marks
// the consumers that belong to destinations.
const MetadataKey = "switchyard_destination"

// ConsumerName is the durable consumer on EVENTS of a destination.
func ConsumerName(destination string) string { return ConsumerPrefix + destination }

// EnsureConsumers creates each of the destination consumers (as
// topology.DestinationConsumers declares them) that does not exist, and
// returns the names of the destinations whose consumer it created. An
// existing consumer is left exactly as it is, even when its configuration
// differs (another service may run an older or newer configuration; the
// dispatcher updates consumers in place).
func EnsureConsumers(ctx context.Context, js jetstream.JetStream, consumers []jetstream.ConsumerConfig) ([]string, error) {
	var created []string
	for _, cc := range consumers {
		name := cc.Metadata[MetadataKey]
		ok, err := CreateIfMissing(ctx, js, cc)
		if err != nil {
			return created, fmt.Errorf("destination %q: %w", name, err)
		}
		if ok {
			created = append(created, name)
		}
	}
	return created, nil
}

// CreateIfMissing creates a consumer on EVENTS unless one of that name
// exists, which it leaves untouched. It reports whether it created it.
func CreateIfMissing(ctx context.Context, js jetstream.JetStream, cc jetstream.ConsumerConfig) (bool, error) {
	if _, err := js.Consumer(ctx, natsx.StreamEvents, cc.Durable); err == nil {
		return false, nil
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return false, fmt.Errorf("look up consumer %s: %w", cc.Durable, err)
	}
	// Create, never update: with the same configuration the server answers
	// with the existing consumer, with another one it refuses.
	if _, err := js.CreateConsumer(ctx, natsx.StreamEvents, cc); err != nil {
		if errors.Is(err, jetstream.ErrConsumerExists) {
			return false, nil // another process created it meanwhile
		}
		return false, fmt.Errorf("create consumer %s: %w", cc.Durable, err)
	}
	return true, nil
}

// Orphan is the consumer of a destination that a configuration does not
// name: left behind by a destination that was removed, or belonging to a
// newer configuration than the one asking.
type Orphan struct {
	// Destination is the destination the consumer delivers to.
	Destination string
	// Consumer is its durable name.
	Consumer string
	// NumPending is the events not yet handed out; NumAckPending those
	// handed out and not finished (in flight or waiting for a retry).
	// Removing the consumer gives all of them up.
	NumPending    uint64
	NumAckPending int
}

// Unconfigured lists the destination consumers on EVENTS whose destination
// is not in dests, by name.
func Unconfigured(ctx context.Context, js jetstream.JetStream, dests []config.Destination) ([]Orphan, error) {
	want := map[string]bool{}
	for _, dc := range dests {
		want[dc.Name] = true
	}
	stream, err := js.Stream(ctx, natsx.StreamEvents)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", natsx.StreamEvents, err)
	}
	var out []Orphan
	lister := stream.ListConsumers(ctx)
	for info := range lister.Info() {
		name, ok := info.Config.Metadata[MetadataKey]
		if !ok || want[name] || info.Name != ConsumerName(name) {
			continue
		}
		out = append(out, Orphan{Destination: name, Consumer: info.Name, NumPending: info.NumPending, NumAckPending: info.NumAckPending})
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("list consumers of %s: %w", natsx.StreamEvents, err)
	}
	slices.SortFunc(out, func(a, b Orphan) int { return cmp.Compare(a.Destination, b.Destination) })
	return out, nil
}
