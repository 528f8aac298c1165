package engine

import (
	"context"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/switchyard/switchyard/pkg/natstest"
	"github.com/switchyard/switchyard/pkg/waitfor"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// The state copy is kept current by a watch that starts again when its
// updates close (a NATS reconnect or server restart can close them).
func TestStateWatchStartsAgain(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := openStore(ctx, js, 1, newMetrics(nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	kv := &natstest.ClosableKV{KeyValue: st.kv}
	st.kv = kv
	if err := st.watch(ctx, natstest.Logger(t)); err != nil {
		t.Fatal(err)
	}
	// Another replica's writes.
	other, err := js.KeyValue(ctx, StateBucket)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		n := kv.CloseWatches(t)
		fp := "fp" + string(rune('a'+i))
		data, _ := proto.Marshal(&switchyardv1.Alert{Fingerprint: fp, Rule: "PartnerDown", State: switchyardv1.AlertState_ALERT_STATE_FIRING})
		if _, err := other.Put(ctx, "alert."+fp, data); err != nil {
			t.Fatal(err)
		}
		waitfor.True(t, "the copy sees another replica's write after its watch closed", func() bool { return st.alert(fp) != nil })
		if kv.Watches() <= n {
			t.Fatal("no new watch started")
		}
	}
}
