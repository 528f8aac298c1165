package server

import (
	"net/http"
	"testing"

	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
)

const otherAPIKey = "sy_live_fedcba9876543210fedc"

// TestAPIKeysHaveTheirOwnIDs: two services with different API keys that
// both use Idempotency-Key 1234 publish two events. Before, the second got
// 200 duplicate and its event was never stored.
func TestAPIKeysHaveTheirOwnIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withAPIKey("orders", testAPIKey), withAPIKey("billing", otherAPIKey))
	a := e.api(t, apiRequest{key: testAPIKey, idem: "1234", body: `{"type":"order.created","data":{"from":"orders"}}`})
	if a.code != http.StatusAccepted || a.reply.ID != "orders:1234" {
		t.Fatalf("orders: %d %s, want 202 with id orders:1234", a.code, a.raw)
	}
	b := e.api(t, apiRequest{key: otherAPIKey, idem: "1234", body: `{"type":"invoice.issued","data":{"from":"billing"}}`})
	if b.code != http.StatusAccepted || b.reply.ID != "billing:1234" {
		t.Fatalf("billing: %d %s, want 202 with id billing:1234", b.code, b.raw)
	}
	if s := storedEvent(t, e, "orders:1234"); string(s.Data) != `{"from":"orders"}` || s.Subject != "events.order.created" {
		t.Errorf("orders' event: %s %q", s.Subject, s.Data)
	}
	if s := storedEvent(t, e, "billing:1234"); string(s.Data) != `{"from":"billing"}` || s.Subject != "events.invoice.issued" {
		t.Errorf("billing's event: %s %q", s.Subject, s.Data)
	}
	// Batches use the same namespace.
	r := e.api(t, apiRequest{key: otherAPIKey, path: "/v1/events/batch", body: `{"events":[{"idempotency_key":"1234","type":"invoice.issued"},{"idempotency_key":"5678","type":"invoice.issued"}]}`})
	if r.code != http.StatusOK {
		t.Fatalf("batch: %d %s", r.code, r.raw)
	}
	if n := natstest.Count(t, e.js, natsx.StreamEvents, "events.>"); n != 3 {
		t.Errorf("%d events stored, want 3 (billing's 1234 once)", n)
	}
	storedEvent(t, e, "billing:5678")
}

// TestAPIKeyCannotShadowOtherIDs: an Idempotency-Key that looks like a
// webhook's or a replay's event id is only part of the caller's own id, so
// it cannot pre-empt the partner's webhook or a replay.
func TestAPIKeyCannotShadowOtherIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withAPIKey("orders", testAPIKey))
	for _, idem := range []string{sourceName + ":" + vecID, "replay:EVENTS:5:erp:1"} {
		a := e.publish(t, idem, `{"type":"order.created"}`)
		if a.code != http.StatusAccepted || a.reply.ID != "orders:"+idem {
			t.Fatalf("publish %q: %d %s, want 202 with id orders:%s", idem, a.code, a.raw, idem)
		}
	}
	w := e.post(t, vector())
	if w.code != http.StatusAccepted || w.reply.Status != statusAccepted || w.reply.ID != sourceName+":"+vecID {
		t.Fatalf("the partner's webhook: %d %s, want 202 accepted (not shadowed by the API event)", w.code, w.raw)
	}
	if n := natstest.Count(t, e.js, natsx.StreamEvents, "webhooks.>"); n != 1 {
		t.Errorf("%d webhooks stored, want 1", n)
	}
	storedEvent(t, e, "orders:replay:EVENTS:5:erp:1")
}
