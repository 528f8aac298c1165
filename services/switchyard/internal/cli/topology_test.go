package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/switchyard/internal/cli"
)

// `switchyard topology` prints what the demo configuration creates without
// connecting anywhere (no NATS runs in this test).
func TestTopologyCommand(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := cli.Execute(context.Background(), []string{"topology", "-c", "../../../../deployments/demo.yaml"}, &out, &out); err != nil {
		t.Fatalf("topology: %v\n%s", err, out.String())
	}
	for _, want := range []string{"EVENTS", "NOTIFICATIONS", "dispatcher-demo-partner", "notifier-console", "dispatcher_reconciler",
		"ingress_idempotency", "switchyard_breakers", "notifier_state", "silences", "ingress_poll_cursors", "ingress_poll_leases", "QUARANTINE"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the output does not name %s:\n%s", want, out.String())
		}
	}

	out.Reset()
	if err := cli.Execute(context.Background(), []string{"topology", "--json", "-c", "../../../../deployments/demo.yaml"}, &out, &out); err != nil {
		t.Fatalf("topology --json: %v\n%s", err, out.String())
	}
	var plan topology.Plan
	if err := json.Unmarshal(out.Bytes(), &plan); err != nil {
		t.Fatalf("topology --json is not a plan: %v\n%s", err, out.String())
	}
	// The demo polls a source: the cursor and lease buckets too. Ingress
	// declares QUARANTINE besides the shared streams and NOTIFICATIONS.
	if len(plan.Streams) != 6 || len(plan.Buckets) != 6 || len(plan.Consumers) != 7 {
		t.Errorf("plan has %d streams, %d consumers, %d buckets; want 6, 7, 6", len(plan.Streams), len(plan.Consumers), len(plan.Buckets))
	}
	for _, s := range plan.Streams {
		if s.Config.Replicas != 1 {
			t.Errorf("stream %s: %d replicas on the demo's single server", s.Config.Name, s.Config.Replicas)
		}
	}
}
