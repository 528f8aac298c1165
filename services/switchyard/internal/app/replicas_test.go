package app_test

import (
	"io"
	"slices"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/svcboot"
	"github.com/switchyard/switchyard/pkg/testing/testctx"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/notifier"
)

// The all-in-one creates exactly what `switchyard topology` shows for its
// configuration: every stream, KV bucket and consumer of the plan, each
// with the plan's replicas, limits and retention, and nothing else. With
// tests/replicas_test.go (every service's plan at nats.replicas: 3 on the
// production layout) this is what keeps a service from creating something
// with a replica count of its own, as the all-in-one's dispatcher once did.
func TestAllInOneCreatesItsPlan(t *testing.T) {
	cfg, err := config.Load("../../../../deployments/demo.yaml", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	cfg.NATS.EmbeddedListen = freeAddr(t)
	cfg.Ingress.Listen, cfg.Auditor.Listen, cfg.Ops.Listen = freeAddr(t), freeAddr(t), freeAddr(t)
	cfg.Demo.Enabled = false
	// Both notifier senders with a consumer each: the log and the webhook.
	cfg.Alerts.WebhookURL = "http://127.0.0.1:9/alerts"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	runApp(t, cfg, io.Discard)

	var js jetstream.JetStream
	waitfor.True(t, "the embedded NATS server", func() bool {
		// The server takes the password its first start wrote.
		auth, err := svcboot.EmbeddedAuth(cfg, false)
		if err != nil {
			return false
		}
		nc, err := nats.Connect("nats://"+cfg.NATS.EmbeddedListen, nats.UserInfo(auth.User, auth.Password))
		if err != nil {
			return false
		}
		t.Cleanup(nc.Close)
		js, err = jetstream.New(nc)
		return err == nil
	})
	plan := topology.ForConfig(cfg, notifier.Senders(cfg.Alerts))
	if len(plan.Consumers) != 8 {
		t.Fatalf("the plan has %d consumers, want 8 (4 shared, 1 destination, the reconciler, 2 senders)", len(plan.Consumers))
	}
	want := map[string]jetstream.StreamConfig{}
	for _, s := range plan.Streams {
		want[s.Config.Name] = s.Config
	}
	buckets := map[string]jetstream.KeyValueConfig{}
	for _, b := range plan.Buckets {
		buckets["KV_"+b.Config.Bucket] = b.Config
	}
	qctx := testctx.New(t)
	waitfor.True(t, "every stream, bucket and consumer of the plan", func() bool {
		for _, c := range plan.Consumers {
			if _, err := js.Consumer(qctx, c.Stream, c.Config.Durable); err != nil {
				return false
			}
		}
		// Streams without a consumer too (QUARANTINE: ingress creates it
		// at start, maybe after the others are there).
		for name := range want {
			if _, err := js.Stream(qctx, name); err != nil {
				return false
			}
		}
		for name := range buckets {
			if _, err := js.Stream(qctx, name); err != nil {
				return false
			}
		}
		return true
	})

	for info := range js.ListStreams(qctx).Info() {
		got := info.Config
		if w, ok := want[got.Name]; ok {
			if got.Replicas != w.Replicas || got.MaxAge != w.MaxAge || got.Retention != w.Retention || got.Storage != w.Storage ||
				!slices.Equal(got.Subjects, w.Subjects) || (w.Duplicates != 0 && got.Duplicates != w.Duplicates) {
				t.Errorf("stream %s is %+v; the plan says %+v", got.Name, got, w)
			}
			delete(want, got.Name)
			continue
		}
		if b, ok := buckets[got.Name]; ok {
			if got.Replicas != b.Replicas || got.MaxAge != b.TTL || got.MaxMsgsPerSubject != int64(b.History) || got.Storage != b.Storage {
				t.Errorf("KV bucket %s: replicas %d, TTL %s, history %d; the plan says %d, %s, %d", b.Bucket, got.Replicas, got.MaxAge, got.MaxMsgsPerSubject, b.Replicas, b.TTL, b.History)
			}
			delete(buckets, got.Name)
			continue
		}
		t.Errorf("stream %s is not in the plan: `switchyard topology` does not show it", got.Name)
	}
	for name := range want {
		t.Errorf("the plan's stream %s was not created", name)
	}
	for name := range buckets {
		t.Errorf("the plan's KV bucket %s was not created", name)
	}
	for _, c := range plan.Consumers {
		cons, err := js.Consumer(qctx, c.Stream, c.Config.Durable)
		if err != nil {
			t.Fatal(err)
		}
		got := cons.CachedInfo().Config
		if got.Replicas != 0 || got.AckPolicy != c.Config.AckPolicy || got.MaxAckPending != c.Config.MaxAckPending || got.MaxDeliver != c.Config.MaxDeliver {
			t.Errorf("consumer %s on %s is %+v; the plan says %+v", c.Config.Durable, c.Stream, got, c.Config)
		}
	}
	for name := range js.StreamNames(qctx).Name() {
		s, err := js.Stream(qctx, name)
		if err != nil {
			t.Fatal(err)
		}
		for info := range s.ListConsumers(qctx).Info() {
			durable := info.Config.Durable
			if durable == "" {
				continue // a KV watch's ephemeral consumer
			}
			if !slices.ContainsFunc(plan.Consumers, func(c topology.Consumer) bool { return c.Stream == name && c.Config.Durable == durable }) {
				t.Errorf("durable consumer %s on %s is not in the plan", durable, name)
			}
		}
	}
}
