package idempotency_test

import (
	"context"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/topology"
	"github.com/switchyard/switchyard/services/ingress/internal/idempotency"
)

func TestKey(t *testing.T) {
	t.Parallel()
	valid := regexp.MustCompile(`^[-/_=.a-zA-Z0-9]+$`)
	for _, id := range []string{"shop:msg_1", "", "é ünicode \x00\r\n", "a.b.>*"} {
		k := idempotency.Key(id)
		if len(k) != 24 || !valid.MatchString(k) || k != idempotency.Key(id) {
			t.Errorf("Key(%q) = %q, want 24 stable KV-key characters", id, k)
		}
	}
	if idempotency.Key("shop:1") == idempotency.Key("shop:2") {
		t.Error("two ids share a key")
	}
}

func TestStore(t *testing.T) {
	t.Parallel()
	_, js := natstest.Start(t).Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := idempotency.New(js, topology.Topology{}.Idempotency(time.Hour).Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Lookup(ctx, "x"); !errors.Is(err, idempotency.ErrNoBucket) {
		t.Fatalf("Lookup before Ensure = %v, want ErrNoBucket", err)
	}
	if err := s.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if _, found, err := s.Lookup(ctx, "shop:msg_1"); err != nil || found {
		t.Fatalf("Lookup of an unknown id = %v, %v", found, err)
	}
	if _, err := js.PublishMsg(ctx, s.Msg("shop:msg_1", "webhooks.shop.order_created")); err != nil {
		t.Fatal(err)
	}
	subject, found, err := s.Lookup(ctx, "shop:msg_1")
	if err != nil || !found || subject != "webhooks.shop.order_created" {
		t.Fatalf("Lookup = %q, %v, %v; want the recorded subject", subject, found, err)
	}
	kv, err := js.KeyValue(ctx, s.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	status, err := kv.Status(ctx)
	if err != nil || status.TTL() != time.Hour || status.History() != 1 {
		t.Fatalf("bucket TTL %v history %d (%v), want the horizon and 1", status.TTL(), status.History(), err)
	}
	// An operator can forget an id: the next delivery is stored again.
	if err := kv.Delete(ctx, idempotency.Key("shop:msg_1")); err != nil {
		t.Fatal(err)
	}
	if _, found, err := s.Lookup(ctx, "shop:msg_1"); err != nil || found {
		t.Fatalf("Lookup after a delete = %v, %v; want no record", found, err)
	}
	// A new horizon applies to the bucket.
	s2, err := idempotency.New(js, topology.Topology{}.Idempotency(2*time.Hour).Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if status, err := kv.Status(ctx); err != nil || status.TTL() != 2*time.Hour {
		t.Errorf("TTL after a new horizon = %v (%v)", status.TTL(), err)
	}
	if _, err := idempotency.New(js, topology.Topology{}.Idempotency(0).Config); err == nil {
		t.Error("New without a horizon succeeded")
	}
	if _, err := idempotency.New(js, jetstream.KeyValueConfig{TTL: time.Hour}); err == nil {
		t.Error("New without a bucket name succeeded")
	}
}
