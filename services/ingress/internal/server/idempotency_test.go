package server

import (
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/testctx"
	"github.com/switchyard/switchyard/pkg/testing/waitfor"
	"github.com/switchyard/switchyard/pkg/topology"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// testCtx is the test's context (testctx.New).
var testCtx = testctx.New

// waitRecord waits until the idempotency record of eventID exists.
func (e *testEnv) waitRecord(t *testing.T, eventID string) {
	t.Helper()
	waitfor.True(t, "the idempotency record of "+eventID, func() bool {
		_, found, err := e.srv.idem.Lookup(testCtx(t), eventID)
		return err == nil && found
	})
}

// waitWindowPassed waits until EVENTS' duplicate window has passed for
// everything published before the call: a canary published now is
// republished until the stream no longer calls it a duplicate.
func waitWindowPassed(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	canary := nats.NewMsg("events.test.canary")
	canary.Header.Set(nats.MsgIdHdr, "canary-"+nats.NewInbox())
	if _, err := js.PublishMsg(testCtx(t), canary); err != nil {
		t.Fatal(err)
	}
	waitfor.True(t, "the duplicate window to pass", func() bool {
		ack, err := js.PublishMsg(testCtx(t), canary)
		return err == nil && !ack.Duplicate
	})
}

// TestRedeliveryAfterTheWindow: days later (here: after a one-second
// duplicate window), a redelivered webhook or a republished API event is
// answered 2xx, stores nothing, and is audited as a duplicate found by its
// idempotency record.
func TestRedeliveryAfterTheWindow(t *testing.T) {
	t.Parallel()
	ns := natstest.StartWith(t, topology.Topology{DuplicateWindow: time.Second})
	_, js := ns.Connect(t)
	e := newEnvOn(t, ns, js, withAPIKey("orders", testAPIKey))
	wantID := sourceName + ":" + vecID
	if a := e.post(t, vector()); a.code != http.StatusAccepted {
		t.Fatalf("first delivery: %d %s", a.code, a.raw)
	}
	api := e.publish(t, "order-1001-created", `{"type":"order.created","data":{"order":1001}}`)
	if api.code != http.StatusAccepted {
		t.Fatalf("first publish: %d %s", api.code, api.raw)
	}
	e.waitRecord(t, wantID)
	e.waitRecord(t, "orders:order-1001-created")
	waitWindowPassed(t, js)

	a := e.post(t, vector())
	if a.code != http.StatusOK || a.reply.Status != statusDuplicate || a.reply.ID != wantID {
		t.Fatalf("redelivery after the window: %d %s, want 200 duplicate", a.code, a.raw)
	}
	if api := e.publish(t, "order-1001-created", `{"type":"order.created","data":{"order":1001}}`); api.code != http.StatusOK || api.reply.Status != statusDuplicate {
		t.Fatalf("republish after the window: %d %s, want 200 duplicate", api.code, api.raw)
	}
	if n := natstest.Count(t, js, natsx.StreamEvents, "webhooks.>"); n != 1 {
		t.Errorf("%d webhooks stored, want 1", n)
	}
	if n := natstest.Count(t, js, natsx.StreamEvents, "events.order.>"); n != 1 {
		t.Errorf("%d API events stored, want 1", n)
	}
	recs, _ := waitAudit(t, js, "audit.duplicate."+sourceName, 1)
	d := recs[0].GetWebhookDuplicate()
	if d.Via != switchyardv1.DuplicateVia_DUPLICATE_VIA_IDEMPOTENCY_RECORD || d.EventId != wantID ||
		d.Subject != "webhooks.shop.unknown" || d.Source != sourceName || d.RemoteAddr != remoteIP {
		t.Errorf("duplicate record = %v", d)
	}
	recs, _ = waitAudit(t, js, "audit.duplicate."+apiSource, 1)
	if d := recs[0].GetWebhookDuplicate(); d.Via != switchyardv1.DuplicateVia_DUPLICATE_VIA_IDEMPOTENCY_RECORD ||
		d.EventId != "orders:order-1001-created" || d.ApiKey != "orders" || d.Subject != "events.order.created" {
		t.Errorf("API duplicate record = %v", d)
	}
}

// TestNotStoredLeavesNoRecord is the crash point before the PubAck: the
// event is not stored (JetStream cannot take it), the partner gets 503,
// and no record says otherwise, so that its retry is stored.
func TestNotStoredLeavesNoRecord(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testCtx(t)
	if err := e.js.DeleteStream(ctx, natsx.StreamEvents); err != nil {
		t.Fatal(err)
	}
	assertUnavailable(t, e.post(t, vector()))
	// The 503 is answered after the record would have been written:
	// waiting for the asynchronous writes to drain proves there is none.
	waitfor.True(t, "no record writes in flight", func() bool { return e.srv.records.InFlight() == 0 })
	if _, found, err := e.srv.idem.Lookup(ctx, sourceName+":"+vecID); err != nil || found {
		t.Fatalf("after a 503, Lookup = found %v, %v; want no record", found, err)
	}

	// JetStream is back: the retry is stored.
	if err := topology.Ensure(ctx, e.js, topology.Topology{}); err != nil {
		t.Fatal(err)
	}
	if a := e.post(t, vector()); a.code != http.StatusAccepted {
		t.Fatalf("retry: %d %s, want 202", a.code, a.raw)
	}
	if n := eventCount(t, e.js); n != 1 {
		t.Errorf("EVENTS holds %d events, want 1", n)
	}
}

// TestRecordWriteFailsAfterPubAck is the crash point between the PubAck and
// the record: the event is stored and acknowledged; a redelivery within the
// duplicate window is still recognised, and writes the missing record.
func TestRecordWriteFailsAfterPubAck(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := testCtx(t)
	// The bucket disappears: lookups and record writes fail.
	if err := e.js.DeleteKeyValue(ctx, topology.IdempotencyBucket); err != nil {
		t.Fatal(err)
	}
	if a := e.post(t, vector()); a.code != http.StatusAccepted {
		t.Fatalf("delivery without the bucket: %d %s, want 202 (the event is stored)", a.code, a.raw)
	}
	if n := eventCount(t, e.js); n != 1 {
		t.Fatalf("EVENTS holds %d events, want 1", n)
	}
	waitfor.True(t, "the failed record write to be counted", func() bool { return e.srv.records.Failed() == 1 })

	if err := e.srv.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	a := e.post(t, vector())
	if a.code != http.StatusOK || a.reply.Status != statusDuplicate {
		t.Fatalf("redelivery within the window: %d %s, want 200 duplicate", a.code, a.raw)
	}
	e.waitRecord(t, sourceName+":"+vecID)
	if n := eventCount(t, e.js); n != 1 {
		t.Errorf("EVENTS holds %d events, want 1", n)
	}
	recs, _ := waitAudit(t, e.js, "audit.duplicate."+sourceName, 1)
	if v := recs[0].GetWebhookDuplicate().Via; v != switchyardv1.DuplicateVia_DUPLICATE_VIA_STREAM_WINDOW {
		t.Errorf("duplicate via %v, want the stream window", v)
	}
}
