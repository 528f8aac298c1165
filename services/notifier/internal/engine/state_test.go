package engine

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/notifier/internal/alerting"
	"github.com/switchyard/switchyard/services/notifier/internal/rules"
	"github.com/switchyard/switchyard/services/notifier/internal/sender"
)

// The state copy is kept current by a watch that starts again when its
// updates close (a NATS reconnect or server restart can close them).
func TestStateWatchStartsAgain(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := openStore(ctx, js, topology.Topology{}.NotifierState().Config, newMetrics(nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	kv := &natstest.ClosableKV{KeyValue: st.kv}
	st.kv = kv
	if err := st.watch(ctx, natstest.Logger(t)); err != nil {
		t.Fatal(err)
	}
	// Another replica's writes.
	other, err := js.KeyValue(ctx, topology.NotifierStateBucket)
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

// Two replicas' copies of a key go stale between their writes: every
// write is compare-and-set on the revision the writer saw, and a conflict
// re-reads the key and applies the change again to the fresher value, so
// that no replica's change is lost (creating, updating and deleting alike).
func TestUpdateAppliesAgainOnConflict(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	open := func() *store {
		st, err := openStore(ctx, js, topology.Topology{}.NotifierState().Config, newMetrics(nil, nil))
		if err != nil {
			t.Fatal(err)
		}
		return st // no watch: its copy holds only what it wrote or read
	}
	a, b := open(), open()
	const key = "alert.fp"
	calls := 0
	bump := func(cur *switchyardv1.Alert) (*switchyardv1.Alert, bool) {
		calls++
		if cur == nil {
			cur = &switchyardv1.Alert{Fingerprint: "fp"}
		}
		cur.LastSequence++
		return cur, true
	}
	stored := func() uint64 {
		t.Helper()
		e, err := a.kv.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		var al switchyardv1.Alert
		if err := proto.Unmarshal(e.Value(), &al); err != nil {
			t.Fatal(err)
		}
		return al.LastSequence
	}
	conflicts := func(s *store) float64 { return testutil.ToFloat64(s.m.stateWrites.WithLabelValues("conflict")) }

	// Both create it: b's create finds a's key.
	if _, wrote, err := update(ctx, a, key, bump); err != nil || !wrote {
		t.Fatalf("a creates: wrote %v, %v", wrote, err)
	}
	calls = 0
	got, wrote, err := update(ctx, b, key, bump)
	if err != nil || !wrote || got.LastSequence != 2 || calls != 2 || stored() != 2 || conflicts(b) != 1 {
		t.Fatalf("b creates over a: got %d, wrote %v, %v, %d calls, stored %d, %v conflicts; want 2, true, nil, 2, 2, 1",
			got.GetLastSequence(), wrote, err, calls, stored(), conflicts(b))
	}
	// a's copy is a revision behind: its update conflicts and applies again.
	calls = 0
	got, _, err = update(ctx, a, key, bump)
	if err != nil || got.LastSequence != 3 || calls != 2 || stored() != 3 || conflicts(a) != 1 {
		t.Fatalf("a updates a stale copy: got %d, %v, %d calls, stored %d, %v conflicts; want 3, nil, 2, 3, 1",
			got.GetLastSequence(), err, calls, stored(), conflicts(a))
	}
	// b deletes from a stale copy: the delete is decided again on the
	// fresh value, which here says keep it.
	calls = 0
	keepFrom3 := func(cur *switchyardv1.Alert) (*switchyardv1.Alert, bool) {
		calls++
		if cur.GetLastSequence() >= 3 {
			return cur, false
		}
		return nil, true
	}
	got, wrote, err = update(ctx, b, key, keepFrom3)
	if err != nil || wrote || got.GetLastSequence() != 3 || calls != 2 || stored() != 3 || conflicts(b) != 2 {
		t.Fatalf("b deletes from a stale copy: got %d, wrote %v, %v, %d calls, stored %d, %v conflicts; want 3, false, nil, 2, 3, 2",
			got.GetLastSequence(), wrote, err, calls, stored(), conflicts(b))
	}
	// Another replica changing the key before every write of this one:
	// update gives up after maxConflicts instead of spinning for ever.
	tries := 0
	_, wrote, err = update(ctx, a, key, func(cur *switchyardv1.Alert) (*switchyardv1.Alert, bool) {
		tries++
		if _, _, err := update(ctx, b, key, bump); err != nil {
			t.Fatal(err)
		}
		cur.LastSequence = 1000
		return cur, true
	})
	if !errors.Is(err, errTooManyConflicts) || wrote || tries != maxConflicts || stored() == 1000 {
		t.Fatalf("a against a replica that always writes first: wrote %v, %v after %d tries, stored %d; want %v after %d",
			wrote, err, tries, stored(), errTooManyConflicts, maxConflicts)
	}
	// An error that is no conflict is returned as it is, not retried.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	calls = 0
	if _, _, err := update(cctx, a, key, bump); !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("update with a cancelled context = %v after %d calls, want %v after 1", err, calls, context.Canceled)
	}
	if got := testutil.ToFloat64(a.m.stateWrites.WithLabelValues("error")); got != 1 {
		t.Errorf("a's failed writes = %v, want 1", got)
	}
}

// Two replicas decide the same page at the same time, one of them from a
// copy that has not seen the other's write yet: the compare-and-set lets
// exactly one make it, and the loser, re-reading the alert, finds the page
// pending and makes and publishes nothing.
func TestTwoReplicasDecidingAtOnceMakeOneMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	prepared := func(ctx context.Context) *Engine {
		t.Helper()
		_, js := e.ns.Connect(t)
		eng, err := New(js, auditlog.NewEmitter(js, "notifier"), Config{
			Rules: rules.NewConfig(e.alerts, e.dests), Senders: []sender.Sender{e.slackSender()},
			Logger: natstest.Logger(t), Clock: e.clock, AuditorCheckInterval: -1,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := eng.prepare(ctx); err != nil {
			t.Fatal(err)
		}
		return eng
	}
	// The watches end before the connections close (cleanups run last
	// first).
	ctx, cancel := context.WithCancel(context.Background())
	a := prepared(ctx)
	t.Cleanup(cancel)
	watching, stopWatching := context.WithCancel(ctx)
	b := prepared(watching)
	t.Cleanup(stopWatching)

	erp := map[string]string{"destination": "erp"}
	fp := alerting.Fingerprint(rules.DeliveryDeadLettered, erp)
	c := rules.Condition{Rule: rules.DeliveryDeadLettered, Labels: erp, Firing: true, Severity: "critical", Count: 1, ResolveAfter: 30 * time.Minute}
	if err := a.process(ctx, c, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, "b's copy sees the alert fire", func() bool { return alerting.Firing(b.store.alert(fp)) })
	stopWatching() // b's copy stays as it is now

	due := e.clock.Now().Add(30 * time.Second) // the group wait
	if err := a.process(ctx, c, due); err != nil {
		t.Fatal(err)
	}
	if err := b.process(ctx, c, due); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(b.m.stateWrites.WithLabelValues("conflict")); got != 1 {
		t.Errorf("b's conflicts = %v, want 1: b did not decide from its stale copy", got)
	}
	if got := testutil.ToFloat64(b.m.stateWrites.WithLabelValues("ok")); got != 0 {
		t.Errorf("b wrote the alert %v times, want 0", got)
	}
	al := e.alertState(rules.DeliveryDeadLettered, erp)
	p := al.GetSenders()["slack"].GetPending()
	if al.GetLastSequence() != 1 || p.GetSequence() != 1 || !p.GetPublished() {
		t.Errorf("alert: last sequence %d, pending %v; want one page, sequence 1, published", al.GetLastSequence(), p)
	}
	msgs := natstest.StreamMsgs(t, e.js, topology.StreamNotifications, "notify.>")
	if len(msgs) != 1 || msgs[0].Sequence != 1 || msgs[0].Header.Get(nats.MsgIdHdr) != notifyID(fp, "slack", 1) {
		t.Fatalf("NOTIFICATIONS = %d messages, want page 1 stored once", len(msgs))
	}
}
