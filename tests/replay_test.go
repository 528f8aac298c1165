package tests

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/dispatcher"
)

// TestReplayEndToEnd: a delivery fails until it is dead-lettered; the
// partner is fixed; a person replays the dead letter through the audit
// API; the real dispatcher delivers it to that destination only, with the
// original event id; the audit log follows every step.
func TestReplayEndToEnd(t *testing.T) {
	// erp fails the first two requests (the whole first round), then works.
	erp := newPartner(t, func(attempt int) int {
		if attempt <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	crm := newPartner(t, always(http.StatusOK))
	sys := startSystem(t, options{Config: config.Config{Destinations: []config.Destination{
		destination("erp", erp.URL, []string{"events.order.>"}, 2),
		destination("crm", crm.URL, []string{"events.order.>"}, 2),
	}}})
	ctx := context.Background()
	api := &auditapi.Client{BaseURL: sys.AuditAPI.URL, RequestedBy: "e2e"}

	if _, err := events.Publish(ctx, sys.JS, events.Event{ID: "order-1042", Type: "order.created", Data: []byte(`{"order":1042}`)}); err != nil {
		t.Fatal(err)
	}
	delivery := func(d auditapi.EventDetail, dest string) auditapi.Delivery {
		for _, x := range d.Deliveries {
			if x.Destination == dest {
				return x
			}
		}
		return auditapi.Delivery{}
	}
	dead := waitfor.Value(t, "the erp delivery dead-lettered in the audit log", func() (auditapi.EventDetail, bool) {
		d, err := api.GetEvent(ctx, "order-1042")
		x := delivery(d, "erp")
		// The dead letter (DEAD_LETTERS) and the attempts (AUDIT) reach
		// the auditor on different streams: wait for both.
		return d, err == nil && x.Status == auditapi.StatusDeadLettered && x.DeadLetterID != "" && len(d.DeadLetters) == 1 && x.Attempts == 2
	})
	dlID := delivery(dead, "erp").DeadLetterID
	if x := delivery(dead, "erp"); x.Attempts != 2 || x.LastStatusCode != 503 {
		t.Errorf("dead-lettered delivery = %+v", x)
	}
	waitfor.True(t, "crm delivered", func() bool {
		d, err := api.GetEvent(ctx, "order-1042")
		return err == nil && delivery(d, "crm").Status == auditapi.StatusDelivered
	})
	list, err := api.ListDeliveries(ctx, url.Values{"status": {"dead_lettered"}, "destination": {"erp"}})
	if err != nil || len(list.Items) != 1 || list.Items[0].EventID != "order-1042" {
		t.Fatalf("dead-lettered deliveries of erp = %+v, %v", list.Items, err)
	}

	res, err := api.Replay(ctx, dlID, "")
	if err != nil || res.Duplicate || res.Subject != "replay.erp.events.order.created" {
		t.Fatalf("replay = %+v, %v", res, err)
	}
	if again, err := api.Replay(ctx, dlID, ""); err != nil || !again.Duplicate {
		t.Errorf("double click = %+v, %v: want the same replay, not a second", again, err)
	}

	done := waitfor.Value(t, "the replay delivered and recorded", func() (auditapi.EventDetail, bool) {
		d, err := api.GetEvent(ctx, "order-1042")
		return d, err == nil && delivery(d, "erp").Status == auditapi.StatusDelivered
	})
	x := delivery(done, "erp")
	if x.Attempts != 1 || x.TotalAttempts != 3 || x.ReplayOf != dlID || x.DeliveredAt == nil || x.DeadLetterID != dlID || x.LastStatusCode != 200 {
		t.Errorf("delivery after the replay = %+v", x)
	}
	last := done.Attempts[len(done.Attempts)-1]
	if last.Destination != "erp" || last.Attempt != 1 || last.ReplayOf != dlID || last.Outcome != "delivered" {
		t.Errorf("the replay's attempt = %+v", last)
	}
	if len(done.Replays) != 1 || done.Replays[0].RequestedBy != "e2e" {
		t.Errorf("replays = %+v", done.Replays)
	}

	// The partner saw the original event id and body again; crm, which
	// had it, saw nothing more.
	got := erp.got("order-1042")
	if len(got) != 3 || string(got[2].body) != `{"order":1042}` {
		t.Fatalf("erp received %d requests for order-1042, want 3", len(got))
	}
	if n := len(crm.got("order-1042")); n != 1 {
		t.Errorf("crm received the event %d times, want once: a replay goes to the failed destination only", n)
	}
	list, err = api.ListDeliveries(ctx, url.Values{"status": {"dead_lettered"}, "destination": {"erp"}})
	if err != nil || len(list.Items) != 0 {
		t.Errorf("dead-lettered deliveries of erp after the replay = %+v, %v", list.Items, err)
	}

	// The audit API reads the backlog of the dispatcher's own consumer.
	dests, err := api.ListDestinations(ctx, "")
	if err != nil || len(dests.Items) != 2 {
		t.Fatalf("destinations: %+v, %v", dests, err)
	}
	for _, d := range dests.Items {
		if d.Backlog == nil {
			t.Errorf("%s: no backlog: the audit API does not find consumer %s", d.Name, dispatcher.ConsumerName(d.Name))
		}
	}
}
