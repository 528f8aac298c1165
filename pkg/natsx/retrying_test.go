package natsx_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
)

// A key read that finds no responder (the bucket's replicas are regrouping
// after a node loss) is asked again until the bucket answers, instead of
// failing the caller at once: a dispatcher starting during a node loss
// exited on it.
func TestKeyReadIsAskedAgainWhenNoServerAnswers(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	nc, raw := ns.Connect(t)
	js := natsx.RetryingJetStream(raw)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := jetstream.KeyValueConfig{Bucket: "regrouping"}
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Without its stream, a direct get of the bucket has no responder.
	if err := raw.DeleteKeyValue(ctx, cfg.Bucket); err != nil {
		t.Fatal(err)
	}
	sent := nc.Stats().OutMsgs
	type result struct {
		value string
		err   error
	}
	got := make(chan result, 1)
	go func() {
		e, err := kv.Get(ctx, "k")
		if err != nil {
			got <- result{err: err}
			return
		}
		got <- result{value: string(e.Value())}
	}()
	// Two requests sent: the first found no responder and was asked again.
	waitfor.Within(t, 10*time.Second, "the key read is asked a second time", func() bool {
		return nc.Stats().OutMsgs >= sent+2
	})
	back, err := raw.CreateKeyValue(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := back.PutString(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil || r.value != "v" {
		t.Fatalf("Get = %q, %v; want the value written once the bucket was back", r.value, r.err)
	}
}
