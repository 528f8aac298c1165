package tests

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/svcboot"
	"github.com/switchyard/switchyard/pkg/testing/natscluster"
	"github.com/switchyard/switchyard/pkg/testing/pgtest"
	"github.com/switchyard/switchyard/pkg/testing/slacktest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/services/auditor"
	"github.com/switchyard/switchyard/services/dispatcher"
	"github.com/switchyard/switchyard/services/ingress"
	"github.com/switchyard/switchyard/services/notifier"
)

// With nats.replicas: 3 on a 3-node cluster, every stream, every durable
// consumer and every KV bucket the four services declare has three
// replicas, as the servers report them (stream and consumer info), not as
// the configuration asks (TestProductionIsReplicatedEverywhere checks the
// plan; this checks what the servers did with it).
func TestClusterReplicas(t *testing.T) {
	t.Parallel()
	c := natscluster.Start(t, natscluster.Options{})
	slack := slacktest.New(t)
	cfg := config.Config{
		NATS:        config.NATS{URL: c.URLs(), Replicas: 3},
		DatabaseURL: config.Secret(pgtest.Schema(t)),
		DataDir:     t.TempDir(),
		Ops:         config.Ops{Listen: "off"},
		Ingress:     config.Ingress{Listen: freeTCPAddr(t)},
		Auditor:     config.Auditor{Listen: freeTCPAddr(t)},
		Sources:     []config.Source{{Name: "shop", Scheme: "standard-webhooks", Secrets: []config.Secret{vectorSecret}}},
		Destinations: []config.Destination{
			destination("erp", "http://127.0.0.1:1/", []string{"events.order.>"}, 3),
		},
		Alerts: config.Alerts{SlackWebhookURL: config.Secret(slack.WebhookURL())},
	}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	stop := func() {
		cancel()
		wg.Wait()
	}
	// The four services as their commands build them, each with its own
	// connection, started one after the other.
	builds := map[string]func(env *svcboot.Env) (svcboot.Service, error){
		"ingress": func(env *svcboot.Env) (svcboot.Service, error) {
			return ingress.New(env.JS, auditlog.NewEmitter(env.JS, "ingress"), ingress.FromConfig(env.Config, env.Log, env.Registry))
		},
		"dispatcher": func(env *svcboot.Env) (svcboot.Service, error) {
			return dispatcher.New(env.JS, auditlog.NewEmitter(env.JS, "dispatcher"), dispatcher.FromConfig(env.Config, env.Log, env.Registry))
		},
		"notifier": func(env *svcboot.Env) (svcboot.Service, error) {
			return notifier.New(env.JS, auditlog.NewEmitter(env.JS, "notifier"), notifier.FromConfig(env.Config, env.Log, env.Registry))
		},
		"auditor": func(env *svcboot.Env) (svcboot.Service, error) {
			return auditor.New(env.JS, auditlog.NewEmitter(env.JS, "auditor"), auditor.FromConfig(env.Config, env.Log, env.Registry))
		},
	}
	var js jetstream.JetStream
	for _, name := range []string{"auditor", "dispatcher", "notifier", "ingress"} {
		env, err := svcboot.Start(ctx, cfg, svcboot.Options{Name: name, LogOutput: io.Discard})
		if err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(env.Close)
		env.Log = slog.New(slog.DiscardHandler)
		svc, err := builds[name](env)
		if err != nil {
			t.Fatalf("build %s: %v", name, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := svc.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s stopped: %v", name, err)
			}
		}()
		// Services stop before their connections close (cleanups run
		// last in, first out).
		t.Cleanup(stop)
		js = env.JS
	}

	// Everything is declared once the services run: the silences bucket
	// by the notifier at start, NOTIFICATIONS and its sender's consumer
	// by the notifier, the breakers bucket by the dispatcher.
	wantStreams := []string{"ADVISORIES", "AUDIT", "DEAD_LETTERS", "EVENTS", "KV_ingress_idempotency", "KV_notifier_state",
		"KV_silences", "KV_switchyard_breakers", "NOTIFICATIONS"}
	wantConsumers := []string{"ADVISORIES/dispatcher_reconciler", "AUDIT/auditor", "AUDIT/notifier", "DEAD_LETTERS/auditor-dead-letters",
		"EVENTS/auditor-events", "EVENTS/" + dispatcher.ConsumerName("erp"), "NOTIFICATIONS/notifier-slack"}
	var report map[string]int
	waitfor.Within(t, 2*time.Minute, "every stream, consumer and bucket declared", func() bool {
		report = replicaReport(t, js)
		for _, w := range append(slices.Clone(wantStreams), wantConsumers...) {
			if _, ok := report[w]; !ok {
				return false
			}
		}
		return true
	})
	var names []string
	for name := range report {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if report[name] != 3 {
			t.Errorf("%s has %d replicas on the servers, want 3", name, report[name])
		}
	}
	lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
	defer lcancel()
	buckets := 0
	for status := range js.KeyValueStores(lctx).Status() {
		buckets++
		if status.Bucket() == "" || report["KV_"+status.Bucket()] != 3 {
			t.Errorf("KV bucket %s: %d replicas on the servers, want 3", status.Bucket(), report["KV_"+status.Bucket()])
		}
	}
	if buckets != 4 {
		t.Errorf("%d KV buckets, want the 4 Switchyard declares", buckets)
	}
	t.Logf("replicas as the servers report them: %v", report)
}

// replicaReport lists every stream and every durable consumer of every
// stream with the number of servers it is placed on, from the servers'
// own info (ClusterInfo: the leader and its replicas), keyed "STREAM" and
// "STREAM/consumer". Ephemeral consumers (KV watches, ordered consumers)
// are one replica in memory by design and are left out.
func replicaReport(t *testing.T, js jetstream.JetStream) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := map[string]int{}
	peers := func(ci *jetstream.ClusterInfo) int {
		if ci == nil || ci.Leader == "" {
			return 0
		}
		return 1 + len(ci.Replicas)
	}
	streams := js.ListStreams(ctx)
	for info := range streams.Info() {
		out[info.Config.Name] = peers(info.Cluster)
		s, err := js.Stream(ctx, info.Config.Name)
		if err != nil {
			t.Fatalf("stream %s: %v", info.Config.Name, err)
		}
		consumers := s.ListConsumers(ctx)
		for ci := range consumers.Info() {
			if ci.Config.Durable == "" {
				continue
			}
			out[info.Config.Name+"/"+ci.Name] = peers(ci.Cluster)
		}
		if err := consumers.Err(); err != nil {
			t.Fatalf("consumers of %s: %v", info.Config.Name, err)
		}
	}
	if err := streams.Err(); err != nil {
		t.Fatalf("list streams: %v", err)
	}
	return out
}
