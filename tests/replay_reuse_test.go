package tests

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
)

// TestReplayOfAReusedEventIDSendsItsOwnPayload: an event id published
// straight to NATS (pkg/events) is used again after the duplicate window
// with another payload. Both messages are dead-lettered; the events table
// keeps the first. Replaying the second dead letter must send the second
// payload, and the event's page must list both messages.
func TestReplayOfAReusedEventIDSendsItsOwnPayload(t *testing.T) {
	var mu sync.Mutex
	var replayed []string
	erp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Switchyard-Replay-Of") == "" {
			w.WriteHeader(http.StatusUnprocessableEntity) // dead-lettered at once
			return
		}
		mu.Lock()
		replayed = append(replayed, string(body))
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(erp.Close)
	cfg := config.Config{Destinations: []config.Destination{destination("erp", erp.URL, []string{"events.order.>"}, 2)}}
	// A short window, so that the id can be used again within the test.
	cfg.NATS.DuplicateWindow = config.Duration(time.Second)
	sys := startSystem(t, options{Config: cfg})
	ctx := context.Background()
	// The test server declared EVENTS with the default window first.
	stream, err := sys.JS.Stream(ctx, natsx.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if sc := stream.CachedInfo().Config; sc.Duplicates != time.Second {
		sc.Duplicates = time.Second
		if _, err := sys.JS.UpdateStream(ctx, sc); err != nil {
			t.Fatal(err)
		}
	}
	api := &auditapi.Client{BaseURL: sys.AuditAPI.URL, RequestedBy: "e2e"}

	const id = "order-reused-7"
	first, err := events.Publish(ctx, sys.JS, events.Event{ID: id, Type: "order.created", Data: []byte(`{"order":7,"version":"first"}`)})
	if err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, "the first message dead-lettered in the audit log", func() bool {
		d, err := api.GetEvent(ctx, id)
		return err == nil && d.Known && len(d.DeadLetters) == 1
	})
	// Within the window the same id is a duplicate and stores nothing;
	// after it, the id is stored again.
	second := waitfor.Value(t, "the id stored again after the duplicate window", func() (events.Result, bool) {
		r, err := events.Publish(ctx, sys.JS, events.Event{ID: id, Type: "order.created", Data: []byte(`{"order":7,"version":"second"}`)})
		return r, err == nil && !r.Duplicate
	})
	if second.Sequence == first.Sequence {
		t.Fatalf("the second message has the first's sequence %d", first.Sequence)
	}
	d := waitfor.Value(t, "both dead letters and both incarnations in the audit log", func() (auditapi.EventDetail, bool) {
		d, err := api.GetEvent(ctx, id)
		return d, err == nil && len(d.DeadLetters) == 2 && len(d.Incarnations) == 2
	})
	if d.StreamSeq != first.Sequence || d.PayloadText == nil || *d.PayloadText != `{"order":7,"version":"first"}` {
		t.Errorf("the event row is %+v, want the first message", d.Event)
	}
	if d.Incarnations[0].StreamSeq != first.Sequence || d.Incarnations[1].StreamSeq != second.Sequence ||
		d.Incarnations[0].PayloadHash == d.Incarnations[1].PayloadHash || d.Incarnations[1].Incarnation == "" {
		t.Errorf("incarnations = %+v, want the first (#%d) then the second (#%d), with their own hashes", d.Incarnations, first.Sequence, second.Sequence)
	}
	var secondDL string
	for _, x := range d.DeadLetters {
		if x.StreamSeq == second.Sequence {
			secondDL = x.ID
		}
	}
	if secondDL == "" {
		t.Fatalf("no dead letter of #%d in %+v", second.Sequence, d.DeadLetters)
	}

	if _, err := api.Replay(ctx, secondDL, ""); err != nil {
		t.Fatalf("replay %s: %v", secondDL, err)
	}
	got := waitfor.Value(t, "the replay delivered to erp", func() ([]string, bool) {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), replayed...), len(replayed) > 0
	})
	if len(got) != 1 || got[0] != `{"order":7,"version":"second"}` {
		t.Errorf("the replay of the second message sent %q, want its own payload", got)
	}
}
