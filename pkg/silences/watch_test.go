package silences

import (
	"context"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// The watch starts again when its updates close (a NATS reconnect or a
// server restart can close them): silences made or ended afterwards still
// reach the notifier.
func TestWatchSurvivesAClosedWatcher(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	st, err := Open(ctx, js, topology.Topology{})
	if err != nil {
		t.Fatal(err)
	}
	kv := &natstest.ClosableKV{KeyValue: st.kv}
	st.kv = kv
	wctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	live, err := st.Watch(wctx, natstest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	erp := map[string]string{"destination": "erp"}
	for range 2 {
		n := kv.CloseWatches(t)
		sil, err := st.Create(ctx, Spec{Matchers: []*switchyardv1.SilenceMatcher{{Name: "destination", Value: "erp", Op: switchyardv1.SilenceMatchOp_SILENCE_MATCH_OP_EQUAL}},
			EndsAt: time.Now().Add(time.Hour), CreatedBy: "test"})
		if err != nil {
			t.Fatal(err)
		}
		waitfor.True(t, "the watch sees a silence made after its updates closed", func() bool { return live.Muting(erp, time.Now()) == sil.Id })
		if kv.Watches() <= n {
			t.Fatalf("no new watch started")
		}
		n = kv.CloseWatches(t)
		if _, err := st.Expire(ctx, sil.Id, "test"); err != nil {
			t.Fatal(err)
		}
		waitfor.True(t, "the watch sees the silence end", func() bool { return live.Muting(erp, time.Now()) == "" })
		if kv.Watches() <= n {
			t.Fatalf("no new watch started")
		}
	}
}
