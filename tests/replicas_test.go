package tests

import (
	"log/slog"
	"testing"

	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/auditor"
	"github.com/switchyard/switchyard/services/dispatcher"
	"github.com/switchyard/switchyard/services/ingress"
	"github.com/switchyard/switchyard/services/notifier"
)

// On the production layout (nats.replicas: 3) every stream and KV bucket
// any service creates has 3 replicas, and every consumer follows its
// stream: the plan says so, and so does the topology each service is built
// with (FromConfig, as its binary and the all-in-one build it). The
// all-in-one once built its dispatcher without it, and the breaker bucket
// had one replica.
func TestProductionIsReplicatedEverywhere(t *testing.T) {
	cfg := loadProduction(t)
	if cfg.NATS.Replicas != 3 {
		t.Fatalf("the production layout has nats.replicas %d, want 3", cfg.NATS.Replicas)
	}
	plan := topology.ForConfig(cfg, notifier.Senders(cfg.Alerts))
	streams := map[string]int{}
	for _, s := range plan.Streams {
		streams[s.Config.Name] = s.Config.Replicas
		if s.Config.Replicas != 3 {
			t.Errorf("stream %s: %d replicas, want 3", s.Config.Name, s.Config.Replicas)
		}
	}
	for _, c := range plan.Consumers {
		if c.Config.Replicas != 0 || streams[c.Stream] != 3 {
			t.Errorf("consumer %s on %s: replicas %d, stream's %d; want it to follow its stream's 3", c.Config.Durable, c.Stream, c.Config.Replicas, streams[c.Stream])
		}
	}
	for _, b := range plan.Buckets {
		if b.Config.Replicas != 3 {
			t.Errorf("KV bucket %s: %d replicas, want 3", b.Config.Bucket, b.Config.Replicas)
		}
	}
	// EVENTS, DEAD_LETTERS, AUDIT, ADVISORIES, NOTIFICATIONS, QUARANTINE.
	if len(plan.Streams) != 6 || len(plan.Buckets) != 4 {
		t.Errorf("the plan has %d streams and %d buckets, want 6 and 4", len(plan.Streams), len(plan.Buckets))
	}

	// What each service creates, from the configuration it is built with.
	log := slog.New(slog.DiscardHandler)
	built := map[string]topology.Topology{
		"every service (svcboot)": topology.FromConfig(cfg),
		"ingress":                 ingress.FromConfig(cfg, log, nil).Topology,
		"dispatcher":              dispatcher.FromConfig(cfg, log, nil).Topology,
		"notifier":                notifier.FromConfig(cfg, log, nil).Topology,
		"auditor":                 auditor.FromConfig(cfg, log, nil).Topology,
	}
	for service, topo := range built {
		creates := map[string]int{
			"idempotency bucket":    topo.Idempotency(cfg.Ingress.IdempotencyHorizon.D()).Config.Replicas,
			"breaker bucket":        topo.Breakers().Config.Replicas,
			"notifier state bucket": topo.NotifierState().Config.Replicas,
			"silences bucket":       topo.Silences().Config.Replicas,
			"NOTIFICATIONS":         topo.Notifications().Config.Replicas,
		}
		for _, s := range topo.Streams() {
			creates[s.Name] = s.Replicas
		}
		for what, replicas := range creates {
			if replicas != 3 {
				t.Errorf("%s would create %s with %d replicas, want 3", service, what, replicas)
			}
		}
	}
}
