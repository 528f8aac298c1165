package server

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/contracts"
	"github.com/switchyard/switchyard/pkg/signing"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/topology"
)

const (
	qShopSecret = "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"
	// orderSchema is a Shopify order as the integration needs it.
	orderSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["id", "email"],
  "properties": {"id": {"type": "integer"}, "email": {"type": "string"}}
}`
	validOrder     = `{"id": 820982911946154500, "email": "jon@example.com"}`
	orderNoEmail   = `{"id": 820982911946154501}`
	orderNotJSON   = `{"id": 820982911946154502, "email": `
	orderWrongType = `{"id": "820982911946154503", "email": "jon@example.com"}`
)

// writeSchema writes a schema file and returns its path.
func writeSchema(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "order.schema.json")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// withContracts replaces the sources and keys of the test server by a
// Shopify source and an API key, each with ct (nil: none), and compiles
// their contracts.
func withContracts(t *testing.T, ct *config.Contract) envOption {
	return func(c *Config) {
		c.Sources = []config.Source{{Name: "shop", Scheme: "shopify", Secrets: []config.Secret{qShopSecret}, Contract: ct}}
		c.APIKeys = []config.IngressAPIKey{{Name: "orders-svc", Key: testAPIKey, Contract: ct}}
		set, err := contracts.Compile(config.Config{Sources: c.Sources, Ingress: config.Ingress{APIKeys: c.APIKeys}}.WithDefaults())
		if err != nil {
			t.Fatal(err)
		}
		c.Contracts = set
	}
}

// shopifyOrder is a signed Shopify orders/create webhook.
func shopifyOrder(id, body string) (http.Header, []byte) {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(signing.HeaderShopifyHmac, base64.StdEncoding.EncodeToString(hmacSHA256(qShopSecret, body)))
	h.Set(signing.HeaderShopifyWebhookID, id)
	h.Set(signing.HeaderShopifyTopic, "orders/create")
	return h, []byte(body)
}

func quarantined(t *testing.T, e *testEnv) []*natsMsg {
	t.Helper()
	var out []*natsMsg
	for _, m := range natstest.StreamMsgs(t, e.js, topology.StreamQuarantine, ">") {
		out = append(out, &natsMsg{subject: m.Subject, header: m.Header, data: m.Data, seq: m.Sequence})
	}
	return out
}

type natsMsg struct {
	subject string
	header  nats.Header
	data    []byte
	seq     uint64
}

// A Shopify order that breaks the source's contract, or is not JSON, is
// answered 2xx (the partner must not retry or give up), is not stored in
// EVENTS (so nothing delivers it), and is kept in QUARANTINE with its id,
// headers and violations, and audited. A valid order goes to EVENTS as
// always; the same malformed order sent again is a duplicate.
func TestMalformedWebhookQuarantined(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withContracts(t, &config.Contract{Schemas: map[string]string{"orders/create": writeSchema(t, orderSchema)}}))
	url := e.serve(t) + "/webhooks/shop"

	h, b := shopifyOrder("ok-1", validOrder)
	if a := send(t, http.MethodPost, url, h, b); a.code != http.StatusAccepted || a.reply.Status != statusAccepted {
		t.Fatalf("valid order: %d %s", a.code, a.raw)
	}
	for _, tt := range []struct{ id, body, want string }{
		{"bad-1", orderNoEmail, "missing property 'email'"},
		{"bad-2", orderNotJSON, "not well-formed JSON"},
		{"bad-3", orderWrongType, "/id: got string, want integer"},
	} {
		h, b := shopifyOrder(tt.id, tt.body)
		a := send(t, http.MethodPost, url, h, b)
		if a.code != http.StatusAccepted || a.reply.Status != statusQuarantined || a.reply.ID != "shop:"+tt.id {
			t.Fatalf("%s: answer %d %s, want 202 quarantined", tt.id, a.code, a.raw)
		}
	}
	if n := eventCount(t, e.js); n != 1 {
		t.Fatalf("EVENTS has %d events, want only the valid order", n)
	}
	q := quarantined(t, e)
	if len(q) != 3 {
		t.Fatalf("QUARANTINE has %d messages, want 3", len(q))
	}
	m := q[0]
	if m.subject != "quarantine.shop.webhooks.shop.orders_create" || string(m.data) != orderNoEmail {
		t.Errorf("quarantined on %q with %q", m.subject, m.data)
	}
	for k, want := range map[string]string{
		nats.MsgIdHdr: "shop:bad-1", "Switchyard-Event-Id": "shop:bad-1", "Switchyard-Source": "shop",
		"Switchyard-Event-Type": "orders/create", contracts.HeaderSubject: "webhooks.shop.orders_create",
	} {
		if got := m.header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if vs := contracts.DecodeViolations(m.header.Get(contracts.HeaderViolations)); len(vs) != 1 || !strings.Contains(vs[0].Message, "email") {
		t.Errorf("violations header = %q", m.header.Get(contracts.HeaderViolations))
	}
	if m.header.Get(signing.HeaderShopifyHmac) != "" {
		t.Error("the signature header was kept in QUARANTINE")
	}

	recs, _ := waitAudit(t, e.js, "audit.quarantined.shop", 3)
	r := recs[0].GetPayloadQuarantined()
	if r.GetEventId() != "shop:bad-1" || r.GetSource() != "shop" || r.GetEventType() != "orders/create" || r.GetRejected() ||
		r.GetSubject() != "webhooks.shop.orders_create" || r.GetQuarantineSeq() != m.seq || len(r.GetViolations()) != 1 {
		t.Errorf("audit record = %v", r)
	}

	// The partner sends the malformed order again: stored once.
	h, b = shopifyOrder("bad-1", orderNoEmail)
	if a := send(t, http.MethodPost, url, h, b); a.code != http.StatusOK || a.reply.Status != statusDuplicate {
		t.Errorf("the same malformed order again: %d %s, want 200 duplicate", a.code, a.raw)
	}
	if n := len(quarantined(t, e)); n != 3 {
		t.Errorf("QUARANTINE has %d messages after a duplicate, want 3", n)
	}

	// Valid orders flow again: the first one is recorded, once.
	for i, id := range []string{"ok-2", "ok-3"} {
		h, b = shopifyOrder(id, fmt.Sprintf(`{"id": %d, "email": "jon@example.com"}`, i))
		if a := send(t, http.MethodPost, url, h, b); a.code != http.StatusAccepted {
			t.Fatalf("valid order %s: %d %s", id, a.code, a.raw)
		}
	}
	recs, _ = waitAudit(t, e.js, "audit.valid.shop", 1)
	if v := recs[0].GetPayloadsValid(); v.GetSource() != "shop" || v.GetEventId() != "shop:ok-2" {
		t.Errorf("record = %v, want PayloadsValid for shop:ok-2", recs[0])
	}
}

// With on_invalid: reject, a payload that breaks the contract is answered
// 422 naming the violations, stored nowhere, and audited as rejected.
func TestInvalidWebhookRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withContracts(t, &config.Contract{Default: writeSchema(t, orderSchema), OnInvalid: config.OnInvalidReject}))
	url := e.serve(t) + "/webhooks/shop"
	h, b := shopifyOrder("bad-1", orderNoEmail)
	a := send(t, http.MethodPost, url, h, b)
	var got invalidReply
	if err := json.Unmarshal([]byte(a.raw), &got); err != nil {
		t.Fatal(err)
	}
	if a.code != http.StatusUnprocessableEntity || got.Error != codeContractViolation || len(got.Violations) != 1 ||
		got.Violations[0].Path != "" || !strings.Contains(got.Message, "missing property 'email'") {
		t.Fatalf("answer %d %s, want 422 naming the missing email", a.code, a.raw)
	}
	if n := eventCount(t, e.js); n != 0 {
		t.Errorf("EVENTS has %d events", n)
	}
	if n := len(quarantined(t, e)); n != 0 {
		t.Errorf("QUARANTINE has %d messages", n)
	}
	recs, _ := waitAudit(t, e.js, "audit.quarantined.shop", 1)
	if r := recs[0].GetPayloadQuarantined(); !r.GetRejected() || r.GetQuarantineSeq() != 0 {
		t.Errorf("audit record = %v, want rejected", r)
	}
}

// Without a contract nothing is checked: a body that is not JSON is
// stored in EVENTS as before.
func TestNoContractNoCheck(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withContracts(t, nil))
	url := e.serve(t) + "/webhooks/shop"
	h, b := shopifyOrder("raw-1", orderNotJSON)
	if a := send(t, http.MethodPost, url, h, b); a.code != http.StatusAccepted || a.reply.Status != statusAccepted {
		t.Fatalf("answer %d %s, want 202 accepted", a.code, a.raw)
	}
	if n := eventCount(t, e.js); n != 1 {
		t.Errorf("EVENTS has %d events, want 1", n)
	}
	if n := len(quarantined(t, e)); n != 0 {
		t.Errorf("QUARANTINE has %d messages", n)
	}
}

// The publish API checks an API key's contract: one event, and each event
// of a batch.
func TestPublishQuarantined(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withContracts(t, &config.Contract{Default: writeSchema(t, orderSchema)}))
	a := e.publish(t, "o-1", `{"type": "order.created", "data": `+orderNoEmail+`}`)
	if a.code != http.StatusAccepted || a.reply.Status != statusQuarantined || a.reply.ID != "orders-svc:o-1" {
		t.Fatalf("answer %d %s, want 202 quarantined", a.code, a.raw)
	}
	a = e.api(t, apiRequest{path: "/v1/events/batch", body: `{"events": [
		{"idempotency_key": "o-2", "type": "order.created", "data": ` + validOrder + `},
		{"idempotency_key": "o-3", "type": "order.created", "data": ` + orderWrongType + `}]}`})
	var batch batchReply
	if err := json.Unmarshal([]byte(a.raw), &batch); err != nil {
		t.Fatal(err)
	}
	if a.code != http.StatusOK || len(batch.Results) != 2 || batch.Results[0].Status != statusAccepted || batch.Results[1].Status != statusQuarantined {
		t.Fatalf("batch answer %d %s", a.code, a.raw)
	}
	if n := eventCount(t, e.js); n != 1 {
		t.Errorf("EVENTS has %d events, want 1", n)
	}
	q := quarantined(t, e)
	if len(q) != 2 || q[0].subject != "quarantine.orders-svc.events.order.created" || q[0].header.Get("Switchyard-Publisher") != "orders-svc" {
		t.Fatalf("QUARANTINE = %d messages, first on %q", len(q), q[0].subject)
	}
	// Two quarantined, and the valid event of the batch after the first.
	recs, _ := waitAudit(t, e.js, "audit.quarantined.orders-svc", 2)
	valids, _ := waitAudit(t, e.js, "audit.valid.orders-svc", 1)
	recs = append(recs, valids...)
	var q2, valid int
	for _, r := range recs {
		switch {
		case r.GetPayloadQuarantined().GetApiKey() == "orders-svc":
			q2++
		case r.GetPayloadsValid().GetApiKey() == "orders-svc" && r.GetPayloadsValid().GetEventId() == "orders-svc:o-2":
			valid++
		}
	}
	if q2 != 2 || valid != 1 {
		t.Errorf("audit records = %v", recs)
	}
}
