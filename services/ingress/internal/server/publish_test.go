package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

const testAPIKey = "sy_live_0123456789abcdef0123"

func withAPIKey(name, key string) envOption {
	return func(c *Config) {
		c.APIKeys = append(c.APIKeys, config.IngressAPIKey{Name: name, Key: config.Secret(key)})
	}
}

// apiRequest is one publish API call.
type apiRequest struct {
	path   string // default /v1/events
	key    string // bearer key; "-" for none
	idem   string // Idempotency-Key
	ctype  string // default application/json
	body   string
	header http.Header
}

func (e *testEnv) api(t *testing.T, r apiRequest) answer {
	t.Helper()
	if r.path == "" {
		r.path = "/v1/events"
	}
	req := httptest.NewRequest(http.MethodPost, r.path, strings.NewReader(r.body))
	req.RemoteAddr = remoteIP + ":40123"
	switch r.key {
	case "-":
	case "":
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
	default:
		req.Header.Set("Authorization", "Bearer "+r.key)
	}
	if r.idem != "" {
		req.Header.Set(HeaderIdempotencyKey, r.idem)
	}
	if r.ctype == "" {
		r.ctype = "application/json"
	}
	req.Header.Set("Content-Type", r.ctype)
	return e.handle(t, req, r.header)
}

// publish sends one event in the JSON form.
func (e *testEnv) publish(t *testing.T, idem, body string) answer {
	t.Helper()
	return e.api(t, apiRequest{idem: idem, body: body})
}

// storedEvent returns the one event stored with id.
func storedEvent(t *testing.T, e *testEnv, id string) events.Stored {
	t.Helper()
	var found []events.Stored
	for _, m := range natstest.StreamMsgs(t, e.js, natsx.StreamEvents, "events.>") {
		if m.Header.Get(nats.MsgIdHdr) == id {
			found = append(found, events.FromMsg(m.Subject, m.Header, m.Data))
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d events stored with id %q, want 1", len(found), id)
	}
	return found[0]
}

func TestPublishAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withAPIKey("orders", testAPIKey))
	tests := []struct {
		name      string
		req       apiRequest
		wantSubj  string
		wantData  string
		wantCType string
	}{
		{
			name:     "JSON form",
			req:      apiRequest{idem: "order-1-created", body: `{"type":"order.created","data": {"order_id": 1,  "total":"42.00"}}`},
			wantSubj: "events.order.created", wantData: `{"order_id": 1,  "total":"42.00"}`, wantCType: "application/json",
		},
		{
			name:     "JSON form with a JSON content type",
			req:      apiRequest{idem: "order-2-created", body: `{"type":"order.created","data":[1,2],"content_type":"application/cloudevents+json"}`},
			wantSubj: "events.order.created", wantData: `[1,2]`, wantCType: "application/cloudevents+json",
		},
		{
			name:     "JSON form with a text payload",
			req:      apiRequest{idem: "invoice-7", body: `{"type":"invoice.issued","data":"<invoice id=\"7\"/>","content_type":"application/xml"}`},
			wantSubj: "events.invoice.issued", wantData: `<invoice id="7"/>`, wantCType: "application/xml",
		},
		{
			name:     "JSON form without data",
			req:      apiRequest{idem: "tick-1", body: `{"type":"clock.tick"}`},
			wantSubj: "events.clock.tick", wantData: ``, wantCType: "application/json",
		},
		{
			name:     "raw form",
			req:      apiRequest{path: "/v1/events?type=report.ready", idem: "report-9", ctype: "text/csv", body: "id,total\n9,100\n"},
			wantSubj: "events.report.ready", wantData: "id,total\n9,100\n", wantCType: "text/csv",
		},
		{
			name:     "raw form of JSON",
			req:      apiRequest{path: "/v1/events?type=order.paid", idem: "order-1-paid", body: `{"type":"not the event type"}`},
			wantSubj: "events.order.paid", wantData: `{"type":"not the event type"}`, wantCType: "application/json",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The event id is the key's name, ':', the Idempotency-Key.
			wantID := "orders:" + tt.req.idem
			a := e.api(t, tt.req)
			if a.code != http.StatusAccepted || a.reply.Status != statusAccepted || a.reply.ID != wantID {
				t.Fatalf("answer %d %s, want 202 accepted with id %q", a.code, a.raw, wantID)
			}
			s := storedEvent(t, e, wantID)
			if s.Subject != tt.wantSubj || string(s.Data) != tt.wantData || s.ContentType != tt.wantCType || s.ID != wantID {
				t.Errorf("stored %s %q (%s) id %q, want %s %q (%s)", s.Subject, s.Data, s.ContentType, s.ID, tt.wantSubj, tt.wantData, tt.wantCType)
			}
			if got := s.Header.Get(events.HeaderPublisher); got != "orders" {
				t.Errorf("%s = %q, want the key's name", events.HeaderPublisher, got)
			}
			for k, vs := range s.Header {
				if strings.Contains(strings.Join(vs, " "), testAPIKey) || strings.EqualFold(k, "Authorization") {
					t.Errorf("stored header %s carries the API key", k)
				}
			}
			// The same key again is the same event, whatever the body.
			tt.req.body = strings.Replace(tt.req.body, "1", "2", 1)
			if a := e.api(t, tt.req); a.code != http.StatusOK || a.reply.Status != statusDuplicate || a.reply.ID != wantID {
				t.Errorf("same key again: %d %s, want 200 duplicate with id %q", a.code, a.raw, wantID)
			}
			storedEvent(t, e, wantID)
		})
	}
	recs, _ := waitAudit(t, e.js, "audit.duplicate."+apiSource, len(tests))
	for _, r := range recs {
		// Found by its record, or by the stream window when the second
		// request came before the record was written.
		if d := r.GetWebhookDuplicate(); d.ApiKey != "orders" || d.Source != apiSource || d.RemoteAddr != remoteIP ||
			d.Via == switchyardv1.DuplicateVia_DUPLICATE_VIA_UNSPECIFIED {
			t.Errorf("duplicate record = %v", d)
		}
	}
}

func TestPublishAPIRejects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withAPIKey("orders", testAPIKey), func(c *Config) { c.MaxBody = 256 })
	tests := []struct {
		name       string
		req        apiRequest
		wantStatus int
		wantCode   string
		wantReason switchyardv1.RejectReason
		wantKey    string
	}{
		{"no key", apiRequest{key: "-", idem: "k1", body: `{"type":"a"}`}, 401, "missing_credentials", switchyardv1.RejectReason_REJECT_REASON_UNAUTHORIZED, ""},
		{"wrong key", apiRequest{key: "sy_live_guess_0000000000", idem: "k1", body: `{"type":"a"}`}, 401, "bad_credentials", switchyardv1.RejectReason_REJECT_REASON_UNAUTHORIZED, ""},
		{"basic auth", apiRequest{key: "-", idem: "k1", body: `{"type":"a"}`, header: http.Header{"Authorization": {"Basic b3JkZXJzOnNlY3JldA=="}}}, 401, "missing_credentials", switchyardv1.RejectReason_REJECT_REASON_UNAUTHORIZED, ""},
		{"no idempotency key", apiRequest{body: `{"type":"a"}`}, 400, "missing_idempotency_key", switchyardv1.RejectReason_REJECT_REASON_MALFORMED, "orders"},
		{"not JSON", apiRequest{idem: "k2", body: `type=a`}, 400, "malformed_body", switchyardv1.RejectReason_REJECT_REASON_MALFORMED, "orders"},
		{"unknown field", apiRequest{idem: "k3", body: `{"type":"a","payload":{}}`}, 400, "malformed_body", switchyardv1.RejectReason_REJECT_REASON_MALFORMED, "orders"},
		{"trailing data", apiRequest{idem: "k3", body: `{"type":"a"} {}`}, 400, "malformed_body", switchyardv1.RejectReason_REJECT_REASON_MALFORMED, "orders"},
		{"no type", apiRequest{idem: "k4", body: `{"data":{}}`}, 400, "invalid_event", switchyardv1.RejectReason_REJECT_REASON_MALFORMED, "orders"},
		{"wildcard type", apiRequest{idem: "k5", body: `{"type":"order.*"}`}, 400, "invalid_event", switchyardv1.RejectReason_REJECT_REASON_MALFORMED, "orders"},
		{"raw with empty type", apiRequest{path: "/v1/events?type=", idem: "k6", body: `x`}, 400, "invalid_event", switchyardv1.RejectReason_REJECT_REASON_MALFORMED, "orders"},
		{"text data not a string", apiRequest{idem: "k7", body: `{"type":"a","data":{},"content_type":"text/plain"}`}, 400, "invalid_event", switchyardv1.RejectReason_REJECT_REASON_MALFORMED, "orders"},
		{"key too long", apiRequest{idem: strings.Repeat("k", MaxIdempotencyKeyLength+1), body: `{"type":"a"}`}, 400, "invalid_idempotency_key", switchyardv1.RejectReason_REJECT_REASON_MALFORMED, "orders"},
		{"key not UTF-8", apiRequest{idem: "order-\xff-created", body: `{"type":"a"}`}, 400, "invalid_idempotency_key", switchyardv1.RejectReason_REJECT_REASON_MALFORMED, "orders"},
		{"key cut inside a character", apiRequest{idem: "commande-cr\xc3", body: `{"type":"a"}`}, 400, "invalid_idempotency_key", switchyardv1.RejectReason_REJECT_REASON_MALFORMED, "orders"},
		{"key with a control character", apiRequest{idem: "order-1\x7f", body: `{"type":"a"}`}, 400, "invalid_idempotency_key", switchyardv1.RejectReason_REJECT_REASON_MALFORMED, "orders"},
		{"content type not UTF-8", apiRequest{path: "/v1/events?type=a", idem: "k9", ctype: "text/plain; charset=\xff", body: `x`}, 400, "invalid_event", switchyardv1.RejectReason_REJECT_REASON_MALFORMED, "orders"},
		{"body too large", apiRequest{idem: "k8", body: `{"type":"a","data":"` + strings.Repeat("x", 300) + `"}`}, 413, "body_too_large", switchyardv1.RejectReason_REJECT_REASON_BODY_TOO_LARGE, "orders"},
	}
	for _, tt := range tests {
		a := e.api(t, tt.req)
		if a.code != tt.wantStatus || a.reply.Error != tt.wantCode || a.reply.Message == "" {
			t.Errorf("%s: %d %s, want %d %s with a message", tt.name, a.code, a.raw, tt.wantStatus, tt.wantCode)
		}
		if strings.Contains(a.raw, testAPIKey) {
			t.Errorf("%s: the answer shows the API key", tt.name)
		}
	}
	if n := eventCount(t, e.js); n != 0 {
		t.Errorf("EVENTS holds %d events, want 0", n)
	}
	recs, raws := waitAudit(t, e.js, "audit.rejected."+apiSource, len(tests))
	for i, r := range recs {
		rj := r.GetWebhookRejected()
		tt := tests[i]
		if rj.Reason != tt.wantReason || rj.StatusCode != int32(tt.wantStatus) || rj.ApiKey != tt.wantKey || rj.RemoteAddr != remoteIP || rj.Source != apiSource {
			t.Errorf("%s: rejection record = %v", tt.name, rj)
		}
		if bytes.Contains(raws[i], []byte(testAPIKey)) || bytes.Contains(raws[i], []byte("sy_live_guess")) {
			t.Errorf("%s: the rejection record carries a key", tt.name)
		}
	}
}

func TestPublishAPIWithoutKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if a := e.publish(t, "k", `{"type":"a"}`); a.code != http.StatusUnauthorized {
		t.Errorf("with no api_keys configured: %d, want 401", a.code)
	}
}

type batchAnswer struct {
	code    int
	header  http.Header
	results []itemResult
}

func (e *testEnv) batch(t *testing.T, body string) batchAnswer {
	t.Helper()
	a := e.api(t, apiRequest{path: "/v1/events/batch", body: body})
	var br batchReply
	if err := json.Unmarshal([]byte(a.raw), &br); err != nil {
		t.Fatal(err)
	}
	return batchAnswer{code: a.code, header: a.header, results: br.Results}
}

func TestPublishBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withAPIKey("orders", testAPIKey), func(c *Config) { c.MaxBatch = 50 })

	var items []string
	for i := range 40 {
		items = append(items, `{"idempotency_key":"batch-`+strconv.Itoa(i)+`","type":"order.created","data":{"n":`+strconv.Itoa(i)+`}}`)
	}
	a := e.batch(t, `{"events":[`+strings.Join(items, ",")+`]}`)
	if a.code != http.StatusOK || len(a.results) != 40 {
		t.Fatalf("batch of 40: %d, %d results", a.code, len(a.results))
	}
	for i, r := range a.results {
		if r.Status != statusAccepted || r.IdempotencyKey != "batch-"+strconv.Itoa(i) || r.ID != "orders:"+r.IdempotencyKey {
			t.Errorf("result %d = %+v, want accepted with id orders:batch-%d", i, r, i)
		}
	}
	if n := natstest.Count(t, e.js, natsx.StreamEvents, "events.order.created"); n != 40 {
		t.Fatalf("%d events stored, want 40", n)
	}
	if s := storedEvent(t, e, "orders:batch-7"); string(s.Data) != `{"n":7}` {
		t.Errorf("stored data = %q", s.Data)
	}

	// Mixed: an event already stored, new ones, and bad ones.
	a = e.batch(t, `{"events":[
		{"idempotency_key":"batch-3","type":"order.created","data":{}},
		{"idempotency_key":"batch-new","type":"order.paid","data":{"n":1}},
		{"idempotency_key":"","type":"order.paid"},
		{"idempotency_key":"batch-bad","type":"order.>"},
		{"idempotency_key":"batch-typo","type":"a","dat":{}},
		"not an object"
	]}`)
	if a.code != http.StatusMultiStatus || len(a.results) != 6 {
		t.Fatalf("mixed batch: %d, %+v", a.code, a.results)
	}
	want := []struct{ status, code string }{
		{statusDuplicate, ""}, {statusAccepted, ""}, {statusRejected, "missing_idempotency_key"},
		{statusRejected, "invalid_event"}, {statusRejected, "malformed_event"}, {statusRejected, "malformed_event"},
	}
	for i, w := range want {
		if r := a.results[i]; r.Status != w.status || r.Error != w.code || (w.code != "" && r.Message == "") {
			t.Errorf("result %d = %+v, want %s %s", i, r, w.status, w.code)
		}
	}
	if n := natstest.Count(t, e.js, natsx.StreamEvents, "events.>"); n != 41 {
		t.Errorf("%d events stored, want 41", n)
	}
	recs, _ := waitAudit(t, e.js, "audit.rejected."+apiSource, 4)
	ids := map[string]bool{}
	for _, r := range recs {
		rj := r.GetWebhookRejected()
		ids[rj.EventId] = true
		if rj.ApiKey != "orders" || rj.Reason != switchyardv1.RejectReason_REJECT_REASON_MALFORMED || rj.StatusCode != http.StatusBadRequest {
			t.Errorf("rejection record = %v", rj)
		}
	}
	if !ids["orders:batch-bad"] || !ids["orders:batch-typo"] || !ids[""] {
		t.Errorf("rejection records for %v, want orders:batch-bad, orders:batch-typo and the ones without a key", ids)
	}

	for name, tt := range map[string]struct {
		body string
		code string
	}{
		"empty":      {`{"events":[]}`, "empty_batch"},
		"too many":   {`{"events":[` + strings.Repeat(`{"idempotency_key":"x","type":"a"},`, 50) + `{"idempotency_key":"x","type":"a"}]}`, "batch_too_large"},
		"not a list": {`{"events":{}}`, "malformed_body"},
		"not JSON":   {`events`, "malformed_body"},
	} {
		a := e.api(t, apiRequest{path: "/v1/events/batch", body: tt.body})
		if a.code != http.StatusBadRequest || a.reply.Error != tt.code {
			t.Errorf("%s: %d %s, want 400 %s", name, a.code, a.raw, tt.code)
		}
	}
}

func TestPublishUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withAPIKey("orders", testAPIKey))
	if err := e.js.DeleteStream(testCtx(t), natsx.StreamEvents); err != nil {
		t.Fatal(err)
	}
	assertUnavailable(t, e.publish(t, "k1", `{"type":"a"}`))
	a := e.batch(t, `{"events":[{"idempotency_key":"k1","type":"a"},{"idempotency_key":"k2","type":"b"}]}`)
	if a.code != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
		t.Fatalf("batch while EVENTS is unavailable: %d (Retry-After %q), want 503 with Retry-After", a.code, a.header.Get("Retry-After"))
	}
	for _, r := range a.results {
		if r.Status != statusUnavailable {
			t.Errorf("result %+v, want unavailable", r)
		}
	}
	// One bad event with the others unavailable: each says what to do.
	a = e.batch(t, `{"events":[{"idempotency_key":"k1","type":"a"},{"idempotency_key":"k2","type":"b.*"}]}`)
	if a.code != http.StatusMultiStatus || a.results[0].Status != statusUnavailable || a.results[1].Status != statusRejected {
		t.Errorf("mixed: %d %+v", a.code, a.results)
	}
}
