package events_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/testctx"
)

// testContext is the test's context (testctx.New).
var testContext = testctx.New

// eventsStream starts a test server and returns JetStream and its EVENTS
// stream.
func eventsStream(t *testing.T) (jetstream.JetStream, jetstream.Stream) {
	t.Helper()
	_, js := natstest.Start(t).Connect(t)
	s, err := js.Stream(testContext(t), natsx.StreamEvents)
	if err != nil {
		t.Fatalf("EVENTS stream: %v", err)
	}
	return js, s
}

func msgCount(t *testing.T, s jetstream.Stream) uint64 {
	t.Helper()
	info, err := s.Info(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestPublish(t *testing.T) {
	t.Parallel()
	js, s := eventsStream(t)
	ctx := testContext(t)

	before := time.Now().UTC()
	res, err := events.Publish(ctx, js, events.Event{
		ID:   "order-1001-created",
		Type: "order.created",
		Data: []byte(`{"order":1001}`),
		Header: nats.Header{
			"Traceparent": []string{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		},
	})
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	after := time.Now().UTC()
	if res.Duplicate || res.Sequence == 0 {
		t.Errorf("Publish = %+v, want a new message", res)
	}

	m, err := s.GetMsg(ctx, res.Sequence)
	if err != nil {
		t.Fatalf("GetMsg(%d): %v", res.Sequence, err)
	}
	if m.Subject != "events.order.created" {
		t.Errorf("subject = %q, want events.order.created", m.Subject)
	}
	if string(m.Data) != `{"order":1001}` {
		t.Errorf("data = %q", m.Data)
	}
	for name, want := range map[string]string{
		events.HeaderEventID:     "order-1001-created",
		nats.MsgIdHdr:            "order-1001-created",
		events.HeaderEventType:   "order.created",
		events.HeaderContentType: "application/json",
		"Traceparent":            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	} {
		if got := m.Header.Get(name); got != want {
			t.Errorf("header %s = %q, want %q", name, got, want)
		}
	}
	received, err := time.Parse(time.RFC3339Nano, m.Header.Get(events.HeaderReceivedAt))
	if err != nil {
		t.Fatalf("%s = %q: %v", events.HeaderReceivedAt, m.Header.Get(events.HeaderReceivedAt), err)
	}
	if received.Before(before) || received.After(after) || received.Location() != time.UTC {
		t.Errorf("%s = %v, want a UTC time between %v and %v", events.HeaderReceivedAt, received, before, after)
	}

	stored := events.FromMsg(m.Subject, m.Header, m.Data)
	if stored.ID != "order-1001-created" || stored.Type != "order.created" || stored.Subject != "events.order.created" ||
		stored.ContentType != "application/json" || !stored.ReceivedAt.Equal(received) || string(stored.Data) != `{"order":1001}` {
		t.Errorf("FromMsg = %+v", stored)
	}
}

func TestPublishContentType(t *testing.T) {
	t.Parallel()
	js, s := eventsStream(t)
	ctx := testContext(t)
	res, err := events.Publish(ctx, js, events.Event{ID: "inv-7", Type: "invoice.paid", Data: []byte("<invoice/>"), ContentType: "application/xml"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctx, res.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get(events.HeaderContentType); got != "application/xml" {
		t.Errorf("Content-Type = %q, want application/xml", got)
	}
}

func TestPublishDuplicate(t *testing.T) {
	t.Parallel()
	js, s := eventsStream(t)
	ctx := testContext(t)
	e := events.Event{ID: "order-42-paid", Type: "order.paid", Data: []byte(`{"order":42}`)}

	first, err := events.Publish(ctx, js, e)
	if err != nil {
		t.Fatal(err)
	}
	// A retry by the producer, even with a different payload, is the same
	// event: the id is the idempotency key.
	e.Data = []byte(`{"order":42,"retry":true}`)
	second, err := events.Publish(ctx, js, e)
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || !second.Duplicate {
		t.Errorf("Duplicate = %v then %v, want false then true", first.Duplicate, second.Duplicate)
	}
	if second.Sequence != first.Sequence {
		t.Errorf("duplicate sequence = %d, want the first copy's %d", second.Sequence, first.Sequence)
	}
	if n := msgCount(t, s); n != 1 {
		t.Errorf("EVENTS holds %d messages, want 1", n)
	}
	m, err := s.GetMsg(ctx, first.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != `{"order":42}` {
		t.Errorf("stored data = %q, want the first copy", m.Data)
	}

	// Another id is another event.
	third, err := events.Publish(ctx, js, events.Event{ID: "order-43-paid", Type: "order.paid"})
	if err != nil {
		t.Fatal(err)
	}
	if third.Duplicate || third.Sequence == first.Sequence {
		t.Errorf("another id: %+v", third)
	}
}

// TestPublishReservedHeaders: the caller's headers cannot override the
// envelope, or an event could claim another id than its dedup key.
func TestPublishReservedHeaders(t *testing.T) {
	t.Parallel()
	js, s := eventsStream(t)
	ctx := testContext(t)
	res, err := events.Publish(ctx, js, events.Event{
		ID:   "real-id",
		Type: "order.created",
		Header: nats.Header{
			nats.MsgIdHdr:            {"forged-id"},
			events.HeaderEventID:     {"forged-id"},
			events.HeaderEventType:   {"forged.type"},
			events.HeaderReceivedAt:  {"1970-01-01T00:00:00Z"},
			events.HeaderContentType: {"text/plain"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(ctx, res.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		nats.MsgIdHdr:            "real-id",
		events.HeaderEventID:     "real-id",
		events.HeaderEventType:   "order.created",
		events.HeaderContentType: "application/json",
	} {
		if got := m.Header.Values(name); len(got) != 1 || got[0] != want {
			t.Errorf("header %s = %q, want only %q", name, got, want)
		}
	}
	if got := m.Header.Get(events.HeaderReceivedAt); strings.HasPrefix(got, "1970") {
		t.Errorf("%s = %q, the caller's value", events.HeaderReceivedAt, got)
	}
}

func TestPublishInvalid(t *testing.T) {
	t.Parallel()
	js, s := eventsStream(t)
	tests := []struct {
		name string
		e    events.Event
	}{
		{"empty id", events.Event{ID: "", Type: "order.created"}},
		{"blank id", events.Event{ID: " \t", Type: "order.created"}},
		{"id too long", events.Event{ID: strings.Repeat("x", events.MaxIDLength+1), Type: "order.created"}},
		{"control character in id", events.Event{ID: "order-1\r\nX-Evil: 1", Type: "order.created"}},
		{"NUL in id", events.Event{ID: "order-1\x00", Type: "order.created"}},
		{"invalid UTF-8 in id", events.Event{ID: "order-\xff", Type: "order.created"}},
		{"id cut inside a character", events.Event{ID: "commande-\xc3", Type: "order.created"}},
		{"C1 control in id", events.Event{ID: "order-\u0085", Type: "order.created"}},
		{"content type not UTF-8", events.Event{ID: "e1", Type: "a", ContentType: "text/plain; charset=\xff"}},
		{"content type with a line break", events.Event{ID: "e1", Type: "a", ContentType: "text/plain\r\nX-Evil: 1"}},
		{"content type too long", events.Event{ID: "e1", Type: "a", ContentType: "text/plain; x=" + strings.Repeat("y", events.MaxContentTypeLength)}},
		{"header not UTF-8", events.Event{ID: "e1", Type: "a", Header: nats.Header{"X-Trace": {"\xfe"}}}},
		{"empty type", events.Event{ID: "e1", Type: ""}},
		{"wildcard type", events.Event{ID: "e1", Type: "order.*"}},
		{"full wildcard type", events.Event{ID: "e1", Type: ">"}},
		{"empty part", events.Event{ID: "e1", Type: "order..created"}},
		{"leading dot", events.Event{ID: "e1", Type: ".order"}},
		{"space", events.Event{ID: "e1", Type: "order created"}},
		{"non-ASCII", events.Event{ID: "e1", Type: "commande.créée"}},
		{"too deep", events.Event{ID: "e1", Type: strings.TrimSuffix(strings.Repeat("a.", 17), ".")}},
	}
	t.Run("cases", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				_, err := events.Publish(testContext(t), js, tt.e)
				if !errors.Is(err, events.ErrInvalidEvent) {
					t.Fatalf("Publish error = %v, want ErrInvalidEvent", err)
				}
			})
		}
	})
	if n := msgCount(t, s); n != 0 {
		t.Errorf("invalid events stored %d messages", n)
	}
}

func TestMaxIDLength(t *testing.T) {
	t.Parallel()
	js, _ := eventsStream(t)
	id := strings.Repeat("x", events.MaxIDLength)
	if _, err := events.Publish(testContext(t), js, events.Event{ID: id, Type: "t"}); err != nil {
		t.Fatalf("Publish with a %d-byte id: %v", len(id), err)
	}
	// Non-ASCII is fine as long as it is valid UTF-8.
	if _, err := events.Publish(testContext(t), js, events.Event{ID: "commande-créée-1", Type: "t", ContentType: "text/plain; charset=utf-8"}); err != nil {
		t.Fatalf("Publish with a UTF-8 id: %v", err)
	}
}

// TestEnvelopeAllowance: the largest envelope Msg can build (longest id,
// type and content type) leaves room to spare within EnvelopeAllowance,
// which ingress adds to its body limits when it compares them with the
// server's max_payload.
func TestEnvelopeAllowance(t *testing.T) {
	t.Parallel()
	e := events.Event{
		ID:          strings.Repeat("i", events.MaxIDLength),
		Type:        strings.TrimSuffix(strings.Repeat("abcdefghijkl.", 16), ".")[:200],
		ContentType: strings.Repeat("c", events.MaxContentTypeLength),
		Header:      nats.Header{events.HeaderPublisher: {strings.Repeat("k", 63)}},
	}
	m, err := e.Msg(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if hdr := m.Size() - len(m.Subject) - len(m.Data); hdr > events.EnvelopeAllowance/2 {
		t.Errorf("the largest envelope is %d bytes of headers; EnvelopeAllowance (%d) should keep at least half spare", hdr, events.EnvelopeAllowance)
	}
}

func TestSubject(t *testing.T) {
	t.Parallel()
	got, err := events.Subject("order.created")
	if err != nil || got != "events.order.created" {
		t.Errorf("Subject(order.created) = %q, %v", got, err)
	}
	if _, err := events.Subject("order.>"); !errors.Is(err, events.ErrInvalidEvent) {
		t.Errorf("Subject(order.>) error = %v, want ErrInvalidEvent", err)
	}
}

func TestMsgAndFromMsg(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 30, 0, 123456789, time.FixedZone("CET", 3600))
	e := events.Event{
		ID: "evt-1", Type: "user.signed_up", Data: []byte("{}"), ContentType: "application/cloudevents+json",
		Header: nats.Header{events.HeaderSource: {"shop"}, events.HeaderReplayOf: {"dl-9"}, "X-Extra": {"a", "b"}},
	}
	m, err := e.Msg(now)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get(events.HeaderReceivedAt); got != "2025-03-01T11:30:00.123456789Z" {
		t.Errorf("%s = %q, want UTC with nanoseconds", events.HeaderReceivedAt, got)
	}
	if got := m.Header.Values("X-Extra"); len(got) != 2 {
		t.Errorf("X-Extra = %q, want both values", got)
	}
	s := events.FromMsg(m.Subject, m.Header, m.Data)
	want := events.Stored{
		ID: "evt-1", Subject: "events.user.signed_up", Type: "user.signed_up", Source: "shop",
		ContentType: "application/cloudevents+json", ReceivedAt: now, ReplayOf: "dl-9", Data: []byte("{}"), Header: m.Header,
	}
	if s.ID != want.ID || s.Subject != want.Subject || s.Type != want.Type || s.Source != want.Source ||
		s.ContentType != want.ContentType || !s.ReceivedAt.Equal(want.ReceivedAt) || s.ReplayOf != want.ReplayOf || string(s.Data) != "{}" {
		t.Errorf("FromMsg = %+v\nwant %+v", s, want)
	}
}

// TestFromMsgFallbacks: a message published without Switchyard's headers
// (by the nats CLI, say) still has an id, from Nats-Msg-Id.
func TestFromMsgFallbacks(t *testing.T) {
	t.Parallel()
	s := events.FromMsg("events.x", nats.Header{nats.MsgIdHdr: {"cli-1"}, events.HeaderReceivedAt: {"yesterday"}}, nil)
	if s.ID != "cli-1" || !s.ReceivedAt.IsZero() {
		t.Errorf("FromMsg = %+v", s)
	}
	if s := events.FromMsg("events.x", nil, nil); s.ID != "" {
		t.Errorf("FromMsg without headers = %+v", s)
	}
}
