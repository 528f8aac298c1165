package cli_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/destinations"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/dispatcher"
	"github.com/switchyard/switchyard/services/switchyard/internal/cli"
)

// `destinations prune` lists the consumers of destinations the
// configuration does not name, with what removing them gives up, and
// removes them (and their breaker state) only with --yes.
func TestDestinationsPrune(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	dest := func(name, subject string) config.Destination {
		return config.Config{Destinations: []config.Destination{{Name: name, URL: "https://" + name + ".example/hooks",
			Subjects: []string{subject}}}}.WithDefaults().Destinations[0]
	}
	if _, err := destinations.EnsureConsumers(ctx, js, topology.DestinationConsumers([]config.Destination{dest("erp", "events.order.>"), dest("crm", "events.>")})); err != nil {
		t.Fatal(err)
	}
	if _, err := events.Publish(ctx, js, events.Event{ID: "ev-1", Type: "customer.created", Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "switchyard_breakers"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "crm", []byte(`{"state":2}`)); err != nil {
		t.Fatal(err)
	}

	file := filepath.Join(t.TempDir(), "switchyard.yaml")
	yaml := "nats:\n  url: " + ns.URL + "\ndestinations:\n  - name: erp\n    url: https://erp.example/hooks\n    subjects: [\"events.order.>\"]\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		if err := cli.Execute(ctx, append([]string{"destinations", "prune", "--config", file}, args...), &out, &out); err != nil {
			t.Fatalf("prune %v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	exists := func(name string) bool {
		_, err := js.Consumer(ctx, natsx.StreamEvents, dispatcher.ConsumerName(name))
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Fatal(err)
		}
		return err == nil
	}

	out := run()
	if !strings.Contains(out, "crm") || !strings.Contains(out, "dispatcher-crm") || strings.Contains(out, "dispatcher-erp") ||
		!strings.Contains(out, "1 event(s) waiting") || !strings.Contains(out, "--yes") {
		t.Errorf("prune without --yes:\n%s", out)
	}
	if !exists("crm") {
		t.Fatal("prune without --yes deleted crm's consumer")
	}

	out = run("--yes")
	if !strings.Contains(out, "deleted dispatcher-crm (1 event(s) given up)") {
		t.Errorf("prune --yes:\n%s", out)
	}
	if exists("crm") || !exists("erp") {
		t.Errorf("after prune --yes: crm exists %v, erp exists %v; want only erp", exists("crm"), exists("erp"))
	}
	if _, err := kv.Get(ctx, "crm"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("crm's breaker state after prune: %v, want gone", err)
	}
	if out := run(); !strings.Contains(out, "nothing to prune") {
		t.Errorf("prune with nothing left:\n%s", out)
	}
}
