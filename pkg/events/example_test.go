package events_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/topology"
)

// A service publishes an event with a stable idempotency key as its ID:
// when it retries after a timeout, JetStream stores the event once.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// In a service, the connection comes from natsx.Connect (or
	// natsx.ConnectEmbedded in the all-in-one) and the topology is declared
	// at start. Here an embedded server stands in for it.
	dir, err := os.MkdirTemp("", "switchyard-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	log := slog.New(slog.DiscardHandler)
	ns, err := natsx.StartEmbedded(natsx.EmbeddedConfig{StoreDir: dir, Listen: "127.0.0.1:0", Logger: log})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ns.WaitForShutdown()
	defer ns.Shutdown()
	nc, err := natsx.Connect(ctx, ns.ClientURL(), natsx.ConnectOptions{Name: "orders", Logger: log})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer natsx.DrainAndClose(nc, 5*time.Second)
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := topology.Ensure(ctx, js, topology.Topology{}); err != nil {
		fmt.Println(err)
		return
	}

	// The order service publishes "order 1001 was created". The key is
	// derived from the business fact, not generated per attempt.
	e := events.Event{
		ID:   "order-1001-created",
		Type: "order.created",
		Data: []byte(`{"order_id":1001,"total":"42.00"}`),
	}
	for attempt := 1; attempt <= 2; attempt++ {
		res, err := events.Publish(ctx, js, e)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("attempt %d: sequence %d, duplicate %v\n", attempt, res.Sequence, res.Duplicate)
	}

	stream, err := js.Stream(ctx, natsx.StreamEvents)
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := stream.GetMsg(ctx, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	stored := events.FromMsg(m.Subject, m.Header, m.Data)
	fmt.Printf("stored %s on %s (%s): %s\n", stored.ID, stored.Subject, stored.ContentType, stored.Data)
	info, err := stream.Info(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("messages in EVENTS:", info.State.Msgs)

	// Output:
	// attempt 1: sequence 1, duplicate false
	// attempt 2: sequence 1, duplicate true
	// stored order-1001-created on events.order.created (application/json): {"order_id":1001,"total":"42.00"}
	// messages in EVENTS: 1
}
