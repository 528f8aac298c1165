package topology_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/testctx"
	"github.com/switchyard/switchyard/pkg/topology"
)

func TestEnsure(t *testing.T) {
	t.Parallel()
	_, js := natstest.StartBare(t, natsx.EmbeddedConfig{}).Connect(t)
	ctx := testctx.New(t)

	// Every service calls it at start, in any order: it must be idempotent.
	for range 2 {
		if err := topology.Ensure(ctx, js, topology.Topology{}); err != nil {
			t.Fatalf("Ensure: %v", err)
		}
	}

	var names []string
	for name := range js.StreamNames(ctx).Name() {
		names = append(names, name)
	}
	slices.Sort(names)
	if want := []string{"ADVISORIES", "AUDIT", "DEAD_LETTERS", "EVENTS"}; !slices.Equal(names, want) {
		t.Errorf("streams = %v, want %v", names, want)
	}

	streams := []struct {
		name       string
		subjects   []string
		retention  jetstream.RetentionPolicy
		duplicates time.Duration
		maxAge     time.Duration
		consumers  []string
	}{
		{natsx.StreamEvents, []string{"events.>", "webhooks.>", "replay.>"}, jetstream.LimitsPolicy, 2 * time.Minute, 7 * 24 * time.Hour, []string{natsx.ConsumerAuditorEvents}},
		{natsx.StreamDeadLetters, []string{"dlq.>"}, jetstream.LimitsPolicy, 2 * time.Hour, 30 * 24 * time.Hour, []string{natsx.ConsumerAuditorDeadLetters}},
		{natsx.StreamAudit, []string{"audit.>"}, jetstream.InterestPolicy, 2 * time.Minute, 7 * 24 * time.Hour, []string{natsx.ConsumerAuditor, natsx.ConsumerNotifier}},
		{natsx.StreamAdvisories, []string{
			"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.EVENTS.*",
			"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.EVENTS.*",
		}, jetstream.LimitsPolicy, 2 * time.Minute, 7 * 24 * time.Hour, nil},
	}
	for _, want := range streams {
		s, err := js.Stream(ctx, want.name)
		if err != nil {
			t.Errorf("stream %s: %v", want.name, err)
			continue
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cfg := info.Config
		if !slices.Equal(cfg.Subjects, want.subjects) || cfg.Retention != want.retention ||
			cfg.Duplicates != want.duplicates || cfg.MaxAge != want.maxAge ||
			cfg.Storage != jetstream.FileStorage || cfg.Replicas != 1 {
			t.Errorf("stream %s: subjects %v, retention %v, duplicates %s, max age %s, storage %v, replicas %d",
				want.name, cfg.Subjects, cfg.Retention, cfg.Duplicates, cfg.MaxAge, cfg.Storage, cfg.Replicas)
		}
		var consumers []string
		for name := range s.ConsumerNames(ctx).Name() {
			consumers = append(consumers, name)
		}
		slices.Sort(consumers)
		if !slices.Equal(consumers, want.consumers) {
			t.Errorf("stream %s: consumers %v, want %v", want.name, consumers, want.consumers)
		}
	}

	c, err := js.Consumer(ctx, natsx.StreamEvents, natsx.ConsumerAuditorEvents)
	if err != nil {
		t.Fatal(err)
	}
	cc := c.CachedInfo().Config
	if !slices.Equal(cc.FilterSubjects, []string{"events.>", "webhooks.>"}) || cc.AckPolicy != jetstream.AckExplicitPolicy ||
		cc.MaxDeliver != -1 || cc.AckWait != time.Minute || cc.MaxAckPending != 20000 {
		t.Errorf("%s: %+v", natsx.ConsumerAuditorEvents, cc)
	}
	for _, name := range []string{natsx.ConsumerAuditor, natsx.ConsumerNotifier} {
		c, err := js.Consumer(ctx, natsx.StreamAudit, name)
		if err != nil {
			t.Fatal(err)
		}
		if cc := c.CachedInfo().Config; cc.Durable != name || cc.AckPolicy != jetstream.AckExplicitPolicy || cc.FilterSubject != "" || len(cc.FilterSubjects) != 0 {
			t.Errorf("%s: %+v", name, cc)
		}
	}

	// A changed topology updates the streams in place.
	if err := topology.Ensure(ctx, js, topology.Topology{EventsMaxAge: time.Hour, DuplicateWindow: time.Minute}); err != nil {
		t.Fatalf("Ensure with a new topology: %v", err)
	}
	s, err := js.Stream(ctx, natsx.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.CachedInfo().Config; cfg.MaxAge != time.Hour || cfg.Duplicates != time.Minute {
		t.Errorf("EVENTS after update: max age %s, duplicates %s", cfg.MaxAge, cfg.Duplicates)
	}
}

func TestStreamsFollowTheTopology(t *testing.T) {
	t.Parallel()
	d := topology.Topology{}.Resolved()
	if d.Replicas != 1 || d.EventsMaxAge != 7*24*time.Hour || d.DuplicateWindow != 2*time.Minute || d.Storage != jetstream.FileStorage {
		t.Errorf("Resolved = %+v", d)
	}
	set := topology.Topology{Replicas: 3, EventsMaxAge: time.Hour, DuplicateWindow: time.Minute, Storage: jetstream.MemoryStorage}
	if got := set.Resolved(); got != set {
		t.Errorf("Resolved changed set values: %+v", got)
	}
	for _, cfg := range set.Streams() {
		if cfg.Replicas != 3 || cfg.Storage != jetstream.MemoryStorage {
			t.Errorf("stream %s: replicas %d, storage %v", cfg.Name, cfg.Replicas, cfg.Storage)
		}
		if cfg.Duplicates > cfg.MaxAge {
			t.Errorf("stream %s: duplicate window %s longer than max age %s", cfg.Name, cfg.Duplicates, cfg.MaxAge)
		}
	}
	// The dispatcher's consumers filter on EVENTS subjects; replay.> must
	// stay outside the auditor's filter so that replays are not recorded
	// twice.
	for _, c := range set.Consumers() {
		for _, f := range c.Config.FilterSubjects {
			if c.Stream == natsx.StreamEvents && strings.HasPrefix(f, "replay.") {
				t.Errorf("consumer %s filters %s", c.Config.Durable, f)
			}
		}
	}
}
