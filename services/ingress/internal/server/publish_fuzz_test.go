package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/untrusted"
)

// longestKeyName is the longest API key name the configuration allows: the
// Idempotency-Key bound is chosen so that the event id stays within
// events.MaxIDLength even under it.
var longestKeyName = strings.Repeat("k", 63)

// FuzzPublishDecode feeds the publish API's decoding what a caller can
// send: the Idempotency-Key header, the body in the JSON form (and as a
// batch), and the ?type= and Content-Type of the raw form. It runs the
// steps handlePublish and handlePublishBatch run before storing
// (checkIdempotencyKey, decodeStrict, envelope.event, Event.Msg) and checks
// that what they accept is what the documentation promises: one JSON value
// and nothing after it, an event id within events.MaxIDLength, a JSON form
// that encodes back to the same event, and a stored message that reads
// back (events.FromMsg) as the event sent, with header values that cannot
// start another header.
func FuzzPublishDecode(f *testing.F) {
	for _, s := range []struct {
		idem, ctype, typ string
		raw              bool
		body             string
	}{
		{"order-1-created", "application/json", "", false, `{"type":"order.created","data":{"order_id":1, "total":"42.00"}}`},
		{"invoice-7", "application/json", "", false, `{"type":"invoice.issued","data":"<invoice id=\"7\"/>","content_type":"application/xml"}`},
		{"c-1", "application/json", "", false, `{"type":"a.b","data":[1,2],"content_type":"application/cloudevents+json; charset=utf-8"}`},
		{"tick", "application/json", "", false, `{"type":"clock.tick"}`},
		{"n", "application/json", "", false, `{"type":"x","data":null,"content_type":"text/plain"}`},
		{"dup", "application/json", "", false, `{"type":"x","type":"y"}`},
		{"unknown", "application/json", "", false, `{"type":"x","datum":1}`},
		{"trailing", "application/json", "", false, `{"type":"x"} {"type":"y"}`},
		{"report-9", "text/csv", "report.ready", true, "id,total\n9,100\n"},
		{"raw-json", "", "order.paid", true, `{"type":"not the event type"}`},
		{" ", "", "", false, `{"type":"x"}`},
		{"é-\u00a0-\u2028", "", "", false, `{"type":"é"}`},
		{strings.Repeat("i", MaxIdempotencyKeyLength), "", "", false, `{"type":"a.*.>"}`},
		{"b", "", "", false, `{"events":[{"idempotency_key":"1","type":"a"},{"idempotency_key":"","type":"a"},[]]}`},
	} {
		f.Add(s.idem, s.ctype, s.typ, s.raw, []byte(s.body))
	}
	now := time.Date(2026, 12, 7, 16, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, idem, ctype, typ string, raw bool, body []byte) {
		idOK := checkIdempotencyKey("the Idempotency-Key header", idem) == nil
		id := apiEventID(longestKeyName, idem)
		if idOK {
			// What the key check lets through, Event.Msg takes as an id.
			if _, err := (events.Event{ID: id, Type: "t"}).Msg(now); err != nil {
				t.Fatalf("Idempotency-Key %q passes the check, but the event id is refused: %v", idem, err)
			}
		}

		// The batch form: one JSON object, each event checked on its own.
		var batch struct {
			Events []json.RawMessage `json:"events"`
		}
		if decodeStrict(body, &batch) == nil {
			if !json.Valid(body) {
				t.Fatalf("decodeStrict accepted a batch that is not one JSON value: %q", body)
			}
			for _, item := range batch.Events {
				var bi batchItem
				if decodeStrict(item, &bi) != nil || checkIdempotencyKey("idempotency_key", bi.IdempotencyKey) != nil {
					continue
				}
				if e, err := (envelope{Type: bi.Type, Data: bi.Data, ContentType: bi.ContentType}).event(apiEventID(longestKeyName, bi.IdempotencyKey)); err == nil {
					checkStored(t, e, now)
				}
			}
		}

		if !idOK {
			return
		}
		if raw {
			// POST /v1/events?type=...: the body byte for byte.
			e := events.Event{ID: id, Type: typ, Data: body, ContentType: ctype}
			if e.ContentType == "" {
				e.ContentType = "application/octet-stream"
			}
			checkStored(t, e, now)
			return
		}
		var env envelope
		if err := decodeStrict(body, &env); err != nil {
			return
		}
		if !json.Valid(body) {
			t.Fatalf("decodeStrict accepted a body that is not one JSON value: %q", body)
		}
		e, err := env.event(id)
		if err != nil {
			return
		}
		if e.Type == "" || e.Type != env.Type || e.ContentType != env.ContentType || e.ID != id {
			t.Fatalf("event %+v from envelope %+v", e, env)
		}
		jsonData := env.ContentType == "" || isJSONMediaType(env.ContentType)
		if jsonData && len(e.Data) > 0 && !json.Valid(e.Data) {
			t.Fatalf("data %q of a JSON content type is not JSON", e.Data)
		}
		// The JSON form encodes back to the same event.
		again := map[string]any{"type": e.Type}
		if e.ContentType != "" {
			again["content_type"] = e.ContentType
		}
		switch {
		case len(env.Data) == 0:
		case jsonData:
			again["data"] = json.RawMessage(e.Data)
		default:
			if !utf8.Valid(e.Data) {
				t.Fatalf("text data %q is not UTF-8", e.Data)
			}
			again["data"] = string(e.Data)
		}
		// Without HTML escaping, which would rewrite '&' in JSON data.
		var enc bytes.Buffer
		je := json.NewEncoder(&enc)
		je.SetEscapeHTML(false)
		if err := je.Encode(again); err != nil {
			t.Fatalf("encode %+v: %v", again, err)
		}
		b := enc.Bytes()
		var env2 envelope
		if err := decodeStrict(b, &env2); err != nil {
			t.Fatalf("the event encoded back, %s, does not decode: %v", b, err)
		}
		e2, err := env2.event(id)
		if err != nil {
			t.Fatalf("the event encoded back, %s, is refused: %v", b, err)
		}
		if e2.Type != e.Type || e2.ContentType != e.ContentType || !sameData(jsonData, e2.Data, e.Data) {
			t.Fatalf("round trip through %s: %+v, want %+v", b, e2, e)
		}
		checkStored(t, e, now)
	})
}

// sameData compares payloads; JSON ones as JSON (encoding/json compacts a
// RawMessage it encodes).
func sameData(isJSON bool, a, b []byte) bool {
	if !isJSON || len(a) == 0 || len(b) == 0 {
		return bytes.Equal(a, b)
	}
	var ca, cb bytes.Buffer
	if json.Compact(&ca, a) != nil || json.Compact(&cb, b) != nil {
		return false
	}
	return bytes.Equal(ca.Bytes(), cb.Bytes())
}

// checkStored checks that, when Event.Msg takes e, the message is on
// events.<type>, reads back as e, and has only header values that are safe
// to keep.
func checkStored(t *testing.T, e events.Event, now time.Time) {
	t.Helper()
	m, err := e.Msg(now)
	if err != nil {
		return
	}
	if m.Subject != "events."+e.Type {
		t.Fatalf("type %q stored on %q", e.Type, m.Subject)
	}
	s := events.FromMsg(m.Subject, m.Header, m.Data)
	wantCT := e.ContentType
	if wantCT == "" {
		wantCT = "application/json"
	}
	if s.ID != e.ID || s.Type != e.Type || s.ContentType != wantCT || !bytes.Equal(s.Data, e.Data) || !s.ReceivedAt.Equal(now) {
		t.Fatalf("stored %+v, want %+v", s, e)
	}
	if len(s.ID) > events.MaxIDLength || len(s.ContentType) > events.MaxContentTypeLength {
		t.Fatalf("stored id %d bytes, content type %d bytes: over the bounds", len(s.ID), len(s.ContentType))
	}
	for k, vs := range m.Header {
		for _, v := range vs {
			if !untrusted.Valid(v) {
				t.Fatalf("header %s: %q is not safe to keep", k, v)
			}
		}
	}
}

// A body followed by a stray '}' or ']' is not one JSON value: refused
// like any other trailing data (FuzzPublishDecode found "{}}" accepted),
// and nothing is stored.
func TestPublishRefusesStrayCloser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withAPIKey("orders", testAPIKey))
	url := e.serve(t)
	for _, tt := range []struct{ path, body string }{
		{"/v1/events", `{"type":"order.created"}}`},
		{"/v1/events", `{"type":"order.created","data":[1]}]`},
		{"/v1/events/batch", `{"events":[{"idempotency_key":"b1","type":"order.created"}]}}`},
	} {
		h := http.Header{"Authorization": {"Bearer " + testAPIKey}, "Content-Type": {"application/json"}, HeaderIdempotencyKey: {"stray-1"}}
		a := send(t, http.MethodPost, url+tt.path, h, []byte(tt.body))
		if a.code != http.StatusBadRequest || a.reply.Error != "malformed_body" || !strings.Contains(a.reply.Message, "unexpected data after the JSON value") {
			t.Errorf("POST %s %s: %d %s, want 400 malformed_body naming the trailing data", tt.path, tt.body, a.code, a.raw)
		}
	}
	if n := eventCount(t, e.js); n != 0 {
		t.Errorf("EVENTS holds %d events, want 0", n)
	}
}
