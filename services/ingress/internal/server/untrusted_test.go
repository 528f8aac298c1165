package server

import (
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/signing"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
)

// TestRejectionsWithBadTextAreAudited is the reviewer's reproduction:
// bad-signature requests whose User-Agent or delivery id is not valid UTF-8
// (or becomes invalid when cut at a byte count) are each answered 401 and
// each audited. Before, a record with such a field failed to marshal and
// was lost, so a forger could stay out of the rejections log and the
// SignatureFailures alert.
func TestRejectionsWithBadTextAreAudited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	url := e.serve(t) + "/webhooks/" + sourceName
	forged := "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	tests := []struct {
		name, userAgent, id string
		wantID              string
	}{
		{"user agent with an invalid byte", "curl/\xff", "msg_1", sourceName + ":msg_1"},
		{"user agent cut inside a character", strings.Repeat("a", 255) + "é", "msg_2", sourceName + ":msg_2"},
		{"delivery id with an invalid byte", "partner/1.0", "msg_\xff", sourceName + ":" + deliveryID(sourceName, "msg_\xff", nil)},
		{"delivery id cut inside a character", "partner/1.0", strings.Repeat("x", 127) + "é", sourceName + ":" + deliveryID(sourceName, strings.Repeat("x", 127)+"é", nil)},
	}
	for _, tt := range tests {
		h := http.Header{
			"User-Agent":                   {tt.userAgent},
			"Content-Type":                 {"application/json"},
			signing.HeaderWebhookID:        {tt.id},
			signing.HeaderWebhookTimestamp: {"1614265330"},
			signing.HeaderWebhookSignature: {forged},
		}
		if a := send(t, http.MethodPost, url, h, []byte(vecBody)); a.code != http.StatusUnauthorized {
			t.Fatalf("%s: status %d (%s), want 401", tt.name, a.code, a.raw)
		}
	}
	recs, _ := waitAudit(t, e.js, "audit.rejected."+sourceName, len(tests))
	byID := map[string]*switchyardv1.WebhookRejected{}
	for _, r := range recs {
		rj := r.GetWebhookRejected()
		byID[rj.EventId] = rj
		for _, s := range []string{rj.UserAgent, rj.EventId, rj.Detail, rj.RemoteAddr} {
			if !utf8.ValidString(s) {
				t.Errorf("record field %q is not valid UTF-8", s)
			}
		}
	}
	for _, tt := range tests {
		rj := byID[tt.wantID]
		if rj == nil {
			t.Errorf("%s: no record with event id %q (have %v)", tt.name, tt.wantID, recs)
			continue
		}
		if rj.Reason != switchyardv1.RejectReason_REJECT_REASON_BAD_SIGNATURE || len(rj.UserAgent) > 256 {
			t.Errorf("%s: record %v", tt.name, rj)
		}
	}
	// The valid part of a user agent is kept.
	if ua := byID[sourceName+":msg_2"].GetUserAgent(); ua != strings.Repeat("a", 255) {
		t.Errorf("user agent cut to %q, want the 255 ASCII bytes before the 'é'", ua)
	}
	if ua := byID[sourceName+":msg_1"].GetUserAgent(); ua != "curl/\uFFFD" {
		t.Errorf("user agent = %q, want the invalid byte replaced", ua)
	}
}

// TestAcceptedEventsHaveValidText: an accepted event whose type or
// delivery id (from a header or the body) is not valid UTF-8, or would be
// cut inside a character, is stored with headers that every later record
// about it can carry: the dispatcher copies the id, the type and the
// headers into protobuf strings for each attempt and dead letter.
func TestAcceptedEventsHaveValidText(t *testing.T) {
	t.Parallel()
	byName := map[string]schemeCase{}
	var sources []config.Source
	for _, c := range schemeCases(t) {
		byName[c.source.Name] = c
		sources = append(sources, c.source)
	}
	e := newEnv(t, withNow(schemeNow), func(cfg *Config) { cfg.Sources = sources })
	base := e.serve(t)
	longType := strings.Repeat("t", maxHeaderValue-1) + "é"
	tests := []struct {
		name, source, id, body string
		header                 map[string]string
		wantType               string
		wantID                 string
	}{
		{
			name: "github event header not UTF-8", source: "gh", id: "gh-delivery-1", body: `{"n":1}`,
			header:   map[string]string{signing.HeaderGitHubEvent: "push\xff"},
			wantType: "push\uFFFD", wantID: "gh:gh-delivery-1",
		},
		{
			name: "github delivery id not UTF-8", source: "gh", id: "delivery-\xfe", body: `{"n":2}`,
			header:   map[string]string{signing.HeaderGitHubEvent: "push"},
			wantType: "push", wantID: "gh:" + deliveryID("gh", "delivery-\xfe", nil),
		},
		{
			name: "type header cut inside a character", source: "courier", id: "r-1", body: `{"n":3}`,
			header:   map[string]string{"X-Event-Type": longType},
			wantType: strings.Repeat("t", maxHeaderValue-1), wantID: "courier:r-1",
		},
		{
			name: "id header not UTF-8", source: "courier", id: "r-\xc3", body: `{"n":4}`,
			header:   map[string]string{"X-Event-Type": "shipment.sent"},
			wantType: "shipment.sent", wantID: "courier:" + deliveryID("courier", "r-\xc3", nil),
		},
		{
			name: "body type cut inside a character", source: "std", id: "msg_long_type", body: `{"type":"` + longType + `"}`,
			wantType: strings.Repeat("t", maxHeaderValue-1), wantID: "std:msg_long_type",
		},
		{
			name: "shopify headers not UTF-8", source: "shop", id: "b54557e4-0000", body: `{"n":5}`,
			header:   map[string]string{signing.HeaderShopifyTopic: "orders/\xffcreate", "X-Shopify-Shop-Domain": "caf\xe9.myshopify.com"},
			wantType: "orders/\uFFFDcreate", wantID: "shop:b54557e4-0000",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := byName[tt.source]
			h := c.sign(true, tt.id, schemeNow, []byte(tt.body))
			for k, v := range tt.header {
				h.Set(k, v)
			}
			a := send(t, http.MethodPost, base+"/webhooks/"+tt.source, h, []byte(tt.body))
			if a.code != http.StatusAccepted || a.reply.ID != tt.wantID {
				t.Fatalf("status %d (%s), want 202 with id %q", a.code, a.raw, tt.wantID)
			}
			m := storedByID(t, e.js, tt.wantID)
			st := events.FromMsg(m.Subject, m.Header, m.Data)
			if st.Type != tt.wantType {
				t.Errorf("stored type = %q, want %q", st.Type, tt.wantType)
			}
			deadLetterMarshals(t, m)
			// Redelivered: the same id, so a duplicate.
			if a := send(t, http.MethodPost, base+"/webhooks/"+tt.source, h, []byte(tt.body)); a.code != http.StatusOK || a.reply.ID != tt.wantID {
				t.Errorf("redelivery: %d %s, want 200 duplicate with id %q", a.code, a.raw, tt.wantID)
			}
		})
	}
}

// storedByID returns the one stored event with id.
func storedByID(t *testing.T, js jetstream.JetStream, id string) *jetstream.RawStreamMsg {
	t.Helper()
	var found []*jetstream.RawStreamMsg
	for _, m := range natstest.StreamMsgs(t, js, natsx.StreamEvents, ">") {
		if m.Header.Get(nats.MsgIdHdr) == id {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d events stored with id %q, want 1", len(found), id)
	}
	return found[0]
}

// deadLetterMarshals builds from a stored event the record the dispatcher
// builds for a dead letter (event id, type, source and every header as
// protobuf strings) and checks that it can be encoded.
func deadLetterMarshals(t *testing.T, m *jetstream.RawStreamMsg) {
	t.Helper()
	st := events.FromMsg(m.Subject, m.Header, m.Data)
	dl := &switchyardv1.DeadLetter{
		Id: "EVENTS:1:erp", EventId: st.ID, Subject: m.Subject, Source: st.Source, EventType: st.Type,
		Payload: m.Data, Headers: map[string]string{},
	}
	for k, vs := range m.Header {
		dl.Headers[k] = strings.Join(vs, ", ")
	}
	if _, err := proto.Marshal(dl); err != nil {
		t.Errorf("a dead letter of the stored event cannot be encoded: %v (headers %q)", err, m.Header)
	}
	if _, err := proto.Marshal(&switchyardv1.DeliveryAttempt{EventId: st.ID, EventType: st.Type, Source: st.Source, Subject: m.Subject}); err != nil {
		t.Errorf("an attempt record of the stored event cannot be encoded: %v", err)
	}
}

// TestRejectionEventIDs: every rejection names the event the same way:
// <source>:<delivery id> (hashed like an accepted event's when long or not
// printable ASCII), whether it was refused before verification (401) or
// after (503 unavailable), and <key name>:<Idempotency-Key> on the publish
// API.
func TestRejectionEventIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withAPIKey("orders", testAPIKey))
	forged := vector()
	forged.signature = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	if a := e.post(t, forged); a.code != http.StatusUnauthorized {
		t.Fatalf("forged: %d", a.code)
	}
	if a := e.publish(t, "k-1", `{"type":"order.*"}`); a.code != http.StatusBadRequest {
		t.Fatalf("bad event: %d", a.code)
	}
	waitAudit(t, e.js, "audit.rejected.>", 2)
	if err := e.js.DeleteStream(testCtx(t), natsx.StreamEvents); err != nil {
		t.Fatal(err)
	}
	if a := e.post(t, vector()); a.code != http.StatusServiceUnavailable {
		t.Fatalf("while EVENTS is missing: %d", a.code)
	}
	if a := e.publish(t, "k-2", `{"type":"order.created"}`); a.code != http.StatusServiceUnavailable {
		t.Fatalf("publish while EVENTS is missing: %d", a.code)
	}
	recs, _ := waitAudit(t, e.js, "audit.rejected.>", 4)
	want := []struct {
		reason switchyardv1.RejectReason
		id     string
	}{
		{switchyardv1.RejectReason_REJECT_REASON_BAD_SIGNATURE, sourceName + ":" + vecID},
		{switchyardv1.RejectReason_REJECT_REASON_MALFORMED, "orders:k-1"},
		{switchyardv1.RejectReason_REJECT_REASON_UNAVAILABLE, sourceName + ":" + vecID},
		{switchyardv1.RejectReason_REJECT_REASON_UNAVAILABLE, "orders:k-2"},
	}
	got := map[string]bool{}
	for _, r := range recs {
		rj := r.GetWebhookRejected()
		got[rj.Reason.String()+" "+rj.EventId] = true
	}
	for _, w := range want {
		if !got[w.reason.String()+" "+w.id] {
			t.Errorf("no %s rejection with event id %q; have %v", w.reason, w.id, got)
		}
	}
}
