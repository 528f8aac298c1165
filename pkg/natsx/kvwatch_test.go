package natsx_test

import (
	"context"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
)

// view is what a watch built: key to value, deleted keys gone.
type view struct {
	mu sync.Mutex
	m  map[string]string
}

func (v *view) apply(e jetstream.KeyValueEntry) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e.Operation() == jetstream.KeyValuePut {
		v.m[e.Key()] = string(e.Value())
	} else {
		delete(v.m, e.Key())
	}
}

func (v *view) get(k string) (string, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s, ok := v.m[k]
	return s, ok
}

// A watch whose updates close starts again and catches up with what changed
// meanwhile, deletes included.
func TestWatchKVStartsAgainWhenItsUpdatesClose(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	raw, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "watched"})
	if err != nil {
		t.Fatal(err)
	}
	kv := &natstest.ClosableKV{KeyValue: raw}
	if _, err := kv.PutString(ctx, "a", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.PutString(ctx, "gone", "x"); err != nil {
		t.Fatal(err)
	}
	v := &view{m: map[string]string{}}
	wctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	if err := natsx.WatchKV(wctx, kv, natsx.KVWatch{Apply: v.apply, Logger: natstest.Logger(t)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := v.get("a"); got != "1" {
		t.Fatalf("WatchKV returned before the current values were in: a = %q", got)
	}

	for round := range 3 {
		n := kv.CloseWatches(t)
		// Changes while no watch runs, and after.
		if _, err := kv.PutString(ctx, "a", string(rune('2'+round))); err != nil {
			t.Fatal(err)
		}
		if err := kv.Delete(ctx, "gone"); err != nil {
			t.Fatal(err)
		}
		waitfor.True(t, "a new watch", func() bool { return kv.Watches() > n })
		want := string(rune('2' + round))
		waitfor.True(t, "the view has a = "+want, func() bool { got, _ := v.get("a"); return got == want })
		waitfor.True(t, "the view drops the deleted key", func() bool { _, ok := v.get("gone"); return !ok })
		if _, err := kv.PutString(ctx, "gone", "back"); err != nil {
			t.Fatal(err)
		}
		waitfor.True(t, "the view sees a change after the restart", func() bool { got, _ := v.get("gone"); return got == "back" })
	}
}
