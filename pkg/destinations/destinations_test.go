package destinations_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/destinations"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/topology"
)

func dest(name string, maxAttempts int, subjects ...string) config.Destination {
	return config.Config{Destinations: []config.Destination{{
		Name: name, URL: "https://" + name + ".example/hooks", Subjects: subjects,
		Retry: config.Retry{MaxAttempts: maxAttempts},
	}}}.WithDefaults().Destinations[0]
}

func consumer(t *testing.T, js jetstream.JetStream, name string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, natsx.StreamEvents, destinations.ConsumerName(name))
	if err != nil {
		t.Fatalf("consumer of %s: %v", name, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// EnsureConsumers creates what is missing and leaves what exists exactly
// as it is, even when another configuration made it differently; an event
// stored after it ran waits in the consumer for a dispatcher.
func TestEnsureConsumersCreatesOnlyWhatIsMissing(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// erp exists already, made by a dispatcher with another policy.
	old := topology.DestinationConsumer(dest("erp", 9, "events.order.>")).Config
	if _, err := js.CreateConsumer(ctx, natsx.StreamEvents, old); err != nil {
		t.Fatal(err)
	}
	before := consumer(t, js, "erp")

	dests := []config.Destination{dest("erp", 3, "events.order.>"), dest("crm", 3, "events.>")}
	created, err := destinations.EnsureConsumers(ctx, js, topology.DestinationConsumers(dests))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(created) != "[crm]" {
		t.Errorf("created %v, want [crm]", created)
	}
	if after := consumer(t, js, "erp"); after.Config.MaxDeliver != 9 || !after.Created.Equal(before.Created) {
		t.Errorf("the existing erp consumer was changed: max_deliver %d, created %v -> %v", after.Config.MaxDeliver, before.Created, after.Created)
	}
	crm := consumer(t, js, "crm")
	want := topology.DestinationConsumer(dests[1]).Config
	if crm.Config.DeliverPolicy != jetstream.DeliverNewPolicy || crm.Config.MaxDeliver != want.MaxDeliver ||
		crm.Config.AckWait != want.AckWait || fmt.Sprint(crm.Config.FilterSubjects) != "[events.> replay.crm.>]" ||
		crm.Config.Metadata[destinations.MetadataKey] != "crm" {
		t.Errorf("crm consumer = %+v", crm.Config)
	}

	if _, err := events.Publish(ctx, js, events.Event{ID: "ev-1", Type: "order.created", Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	if got := consumer(t, js, "crm").NumPending; got != 1 {
		t.Errorf("crm pending = %d, want the event stored after it was created", got)
	}
	// Running it again creates nothing.
	if created, err := destinations.EnsureConsumers(ctx, js, topology.DestinationConsumers(dests)); err != nil || len(created) != 0 {
		t.Errorf("second run created %v (err %v), want nothing", created, err)
	}
}

// Unconfigured names the destination consumers a configuration does not
// have, with what removing them would give up, and nothing else.
func TestUnconfigured(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	all := []config.Destination{dest("erp", 3, "events.order.>"), dest("crm", 3, "events.>"), dest("wms", 3, "events.stock.>")}
	if _, err := destinations.EnsureConsumers(ctx, js, topology.DestinationConsumers(all)); err != nil {
		t.Fatal(err)
	}
	// Not a destination's, though its name looks like one.
	if _, err := js.CreateConsumer(ctx, natsx.StreamEvents, jetstream.ConsumerConfig{
		Durable: "dispatcher-lookalike", AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"ev-1", "ev-2"} {
		if _, err := events.Publish(ctx, js, events.Event{ID: id, Type: "order.created", Data: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
	}

	orphans, err := destinations.Unconfigured(ctx, js, all[:1])
	if err != nil {
		t.Fatal(err)
	}
	want := []destinations.Orphan{
		{Destination: "crm", Consumer: "dispatcher-crm", NumPending: 2},
		{Destination: "wms", Consumer: "dispatcher-wms"},
	}
	if fmt.Sprint(orphans) != fmt.Sprint(want) {
		t.Errorf("Unconfigured = %+v, want %+v", orphans, want)
	}
	if orphans, err := destinations.Unconfigured(ctx, js, all); err != nil || len(orphans) != 0 {
		t.Errorf("with every destination configured: %v, %v", orphans, err)
	}
}
