package syncwait

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/syncreply"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

func reply(dest string, attempt int32, status int32) *switchyardv1.DeliveryReply {
	return &switchyardv1.DeliveryReply{Attempt: &switchyardv1.DeliveryAttempt{Destination: dest, Attempt: attempt, StatusCode: status}, Body: []byte("ok")}
}

func TestWaitCollectsTheFirstReplyOfEachDestination(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	ncIngress, _ := ns.Connect(t)
	// The replies come from another connection, as from a dispatcher.
	ncDispatcher, _ := ns.Connect(t)
	w, err := New(ncIngress, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })

	wt := w.Start([]string{"crm", "erp"})
	other := w.Start([]string{"crm"})
	for _, r := range []struct {
		subject string
		r       *switchyardv1.DeliveryReply
	}{
		{wt.Subject, reply("crm", 1, 200)},
		{wt.Subject, reply("crm", 2, 500)}, // a later attempt: the first counts
		{wt.Subject, reply("billing", 1, 200)},
		{other.Subject, reply("crm", 1, 201)},
		{wt.Subject, reply("erp", 1, 503)},
	} {
		if err := syncreply.Publish(ncDispatcher, r.subject, r.r); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := wt.Collect(ctx)
	if ctx.Err() != nil || len(got) != 2 || got["crm"].GetAttempt().GetStatusCode() != 200 || got["erp"].GetAttempt().GetStatusCode() != 503 {
		t.Errorf("collected %v, want crm 200 and erp 503 before the deadline", got)
	}
	if r := other.Collect(ctx)["crm"]; r.GetAttempt().GetStatusCode() != 201 {
		t.Errorf("the other request got %v", r)
	}
	wt.Stop()
	other.Stop()
	if n := w.Waiting(); n != 0 {
		t.Errorf("%d requests still registered", n)
	}

	// Nobody replies: the wait ends with the context, the destination
	// pending.
	slow := w.Start([]string{"crm"})
	defer slow.Stop()
	sctx, scancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer scancel()
	if got := slow.Collect(sctx); len(got) != 0 {
		t.Errorf("collected %v from nobody", got)
	}
	// A reply after Stop is dropped without harm.
	slow.Stop()
	if err := syncreply.Publish(ncDispatcher, slow.Subject, reply("crm", 1, 200)); err != nil {
		t.Fatal(err)
	}
	if err := ncDispatcher.Flush(); err != nil {
		t.Fatal(err)
	}
}
