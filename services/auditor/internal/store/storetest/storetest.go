// Package storetest is the one test suite every audit store implementation
// must pass, as Watermill runs one Pub/Sub suite against every backend.
// store_test.go runs it against Postgres and SQLite.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
)

// Run runs the suite. open returns a new, empty, not yet migrated store
// that the test owns (it is closed at cleanup by open or by the caller).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, st store.Store)
	}{
		{"MigrateIsIdempotent", testMigrateIdempotent},
		{"MigrateConcurrently", testMigrateConcurrently},
		{"WriteEmptyBatch", testWriteEmptyBatch},
		{"GetEvent", testGetEvent},
		{"RewriteChangesNothing", testRewrite},
		{"DuplicatesWithinBatch", testDuplicatesWithinBatch},
		{"AttemptsBeforeEvent", testAttemptsBeforeEvent},
		{"DeadLetterOnly", testDeadLetterOnly},
		{"NotFound", testNotFound},
		{"Payloads", testPayloads},
		{"ListRejections", testListRejections},
		{"ConcurrentWrites", testConcurrentWrites},
		{"NULCharacters", testNULCharacters},
		{"EventIncarnations", testEventIncarnations},
	}
	tests = append(tests, modelTests...)
	tests = append(tests, listTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// base is a fixed time with microsecond precision (Postgres keeps
// microseconds; SQLite keeps nanoseconds).
var base = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func migrate(t *testing.T, st store.Store) {
	t.Helper()
	if err := st.Migrate(ctx(t)); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
}

func write(t *testing.T, st store.Store, b store.Batch) {
	t.Helper()
	if err := st.Write(ctx(t), b); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func get(t *testing.T, st store.Store, id string) store.EventDetail {
	t.Helper()
	d, err := st.GetEvent(ctx(t), id)
	if err != nil {
		t.Fatalf("GetEvent(%q): %v", id, err)
	}
	return d
}

// Event returns a stored event fixture.
func Event(id string, payload []byte) store.Routed {
	return store.Routed{Event: store.Event{
		ID:          id,
		Subject:     "webhooks.shop.order_created",
		Source:      "shop",
		Type:        "order.created",
		StreamSeq:   42,
		ReceivedAt:  base,
		ContentType: "application/json",
		Payload:     payload,
		Headers:     map[string]string{"Switchyard-Event-Id": id, "Switchyard-Source": "shop", "Content-Type": "application/json"},
	}}
}

// Attempt returns a delivery attempt record fixture.
func Attempt(eventID, destination string, n int, started time.Time, status int, outcome switchyardv1.Outcome, final bool) *switchyardv1.AuditRecord {
	errText := ""
	if outcome != switchyardv1.Outcome_OUTCOME_DELIVERED {
		errText = fmt.Sprintf("HTTP %d", status)
	}
	return &switchyardv1.AuditRecord{
		Id:       fmt.Sprintf("attempt:EVENTS:42:%s:%d:%s", destination, n, eventID),
		Time:     timestamppb.New(started.Add(time.Second)),
		Service:  "dispatcher",
		Instance: "host/1",
		Detail: &switchyardv1.AuditRecord_DeliveryAttempt{DeliveryAttempt: &switchyardv1.DeliveryAttempt{
			EventId:          eventID,
			Destination:      destination,
			Subject:          "webhooks.shop.order_created",
			StreamSeq:        42,
			Attempt:          int32(n),
			MaxAttempts:      3,
			StartedAt:        timestamppb.New(started),
			Duration:         durationpb.New(1500 * time.Microsecond),
			StatusCode:       int32(status),
			Outcome:          outcome,
			Error:            errText,
			ResponseSnippet:  "snippet " + fmt.Sprint(n),
			Final:            final,
			TraceId:          fmt.Sprintf("%032x", n),
			TransformVersion: fmt.Sprintf("%012x", 0xabc000+n),
		}},
	}
}

// DeadLetter returns a dead letter record fixture.
func DeadLetter(eventID, destination string, at time.Time) *switchyardv1.AuditRecord {
	id := "EVENTS:42:" + destination + ":" + eventID
	return &switchyardv1.AuditRecord{
		Id:      "dead_letter:" + id,
		Time:    timestamppb.New(at),
		Service: "dispatcher",
		Detail: &switchyardv1.AuditRecord_DeadLettered{DeadLettered: &switchyardv1.DeadLetter{
			Id:              id,
			EventId:         eventID,
			Destination:     destination,
			Subject:         "webhooks.shop.order_created",
			Stream:          "EVENTS",
			StreamSeq:       42,
			Attempts:        3,
			LastStatusCode:  503,
			LastError:       "HTTP 503 Service Unavailable",
			ResponseSnippet: "down",
			Reason:          switchyardv1.DeadLetterReason_DEAD_LETTER_REASON_MAX_ATTEMPTS,
			DeadLetteredAt:  timestamppb.New(at),
			Payload:         []byte("the audit copy carries no payload, but if it did it is not stored"),
		}},
	}
}

// Rejection returns a webhook rejection record fixture.
func Rejection(id string, at time.Time) *switchyardv1.AuditRecord {
	return &switchyardv1.AuditRecord{
		Id:      id,
		Time:    timestamppb.New(at),
		Service: "ingress",
		Detail: &switchyardv1.AuditRecord_WebhookRejected{WebhookRejected: &switchyardv1.WebhookRejected{
			Source:     "shop",
			Reason:     switchyardv1.RejectReason_REJECT_REASON_BAD_SIGNATURE,
			Detail:     "signature does not match",
			RemoteAddr: "203.0.113.7",
			StatusCode: 401,
			EventId:    "msg_" + id,
			UserAgent:  "partner/1.0",
			BodySize:   20,
		}},
	}
}

// Others returns records of kinds that go to the generic table.
func Others(at time.Time) []*switchyardv1.AuditRecord {
	return []*switchyardv1.AuditRecord{
		{Id: "dup-1", Time: timestamppb.New(at), Service: "ingress", Detail: &switchyardv1.AuditRecord_WebhookDuplicate{
			WebhookDuplicate: &switchyardv1.WebhookDuplicate{Source: "shop", EventId: "shop:msg_1", Via: switchyardv1.DuplicateVia_DUPLICATE_VIA_STREAM_WINDOW},
		}},
		{Id: "alert-1", Time: timestamppb.New(at), Service: "notifier", Detail: &switchyardv1.AuditRecord_Alert{
			Alert: &switchyardv1.AlertNotification{Rule: "DeliveryDeadLettered", Labels: map[string]string{"destination": "erp"}, Delivered: true, Sender: "slack"},
		}},
		{Id: "circuit-1", Time: timestamppb.New(at), Service: "dispatcher", Detail: &switchyardv1.AuditRecord_CircuitChanged{
			CircuitChanged: &switchyardv1.CircuitChanged{Destination: "erp", From: switchyardv1.CircuitState_CIRCUIT_STATE_CLOSED, To: switchyardv1.CircuitState_CIRCUIT_STATE_OPEN},
		}},
		{Id: "bare-1", Time: timestamppb.New(at), Service: "auditor"},
	}
}

// FullBatch is one batch with an event and every kind of record.
func FullBatch(eventID string) store.Batch {
	recs := []*switchyardv1.AuditRecord{
		// Out of order on purpose: GetEvent orders attempts by start time.
		Attempt(eventID, "erp", 3, base.Add(3*time.Minute), 503, switchyardv1.Outcome_OUTCOME_RETRYABLE, true),
		Attempt(eventID, "erp", 1, base.Add(time.Minute), 503, switchyardv1.Outcome_OUTCOME_RETRYABLE, false),
		Attempt(eventID, "crm", 1, base.Add(90*time.Second), 200, switchyardv1.Outcome_OUTCOME_DELIVERED, true),
		Attempt(eventID, "erp", 2, base.Add(2*time.Minute), 503, switchyardv1.Outcome_OUTCOME_RETRYABLE, false),
		DeadLetter(eventID, "erp", base.Add(4*time.Minute)),
		Rejection("rej-"+eventID, base),
	}
	recs = append(recs, Others(base)...)
	return store.Batch{Events: []store.Routed{Event(eventID, []byte(`{"order":42}`))}, Records: recs}
}

func testMigrateIdempotent(t *testing.T, st store.Store) {
	migrate(t, st)
	migrate(t, st)
	write(t, st, FullBatch("ev-migrate"))
	migrate(t, st)
	if d := get(t, st, "ev-migrate"); d.Event == nil {
		t.Error("a third Migrate lost the data")
	}
}

func testMigrateConcurrently(t *testing.T, st store.Store) {
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = st.Migrate(ctx(t)) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent Migrate %d: %v", i, err)
		}
	}
	write(t, st, FullBatch("ev-concurrent"))
}

func testWriteEmptyBatch(t *testing.T, st store.Store) {
	migrate(t, st)
	write(t, st, store.Batch{})
	if b := (store.Batch{}); b.Len() != 0 {
		t.Errorf("empty batch Len = %d", b.Len())
	}
	if b := FullBatch("x"); b.Len() != 11 {
		t.Errorf("FullBatch Len = %d, want 11", b.Len())
	}
}

func testGetEvent(t *testing.T, st store.Store) {
	migrate(t, st)
	b := FullBatch("ev-1")
	write(t, st, b)
	// Another event's rows must not leak into this one's.
	write(t, st, FullBatch("ev-other"))

	d := get(t, st, "ev-1")
	CheckEvent(t, d.Event, b.Events[0].Event)

	wantOrder := []struct {
		dest    string
		n       int
		outcome string
		status  int
		final   bool
	}{
		{"erp", 1, "retryable", 503, false},
		{"crm", 1, "delivered", 200, true},
		{"erp", 2, "retryable", 503, false},
		{"erp", 3, "retryable", 503, true},
	}
	if len(d.Attempts) != len(wantOrder) {
		t.Fatalf("%d attempts, want %d", len(d.Attempts), len(wantOrder))
	}
	for i, w := range wantOrder {
		a := d.Attempts[i]
		if a.Destination != w.dest || a.Attempt != w.n || a.Outcome != w.outcome || a.StatusCode != w.status || a.Final != w.final {
			t.Errorf("attempt %d = %s #%d %s %d final=%v, want %s #%d %s %d final=%v",
				i, a.Destination, a.Attempt, a.Outcome, a.StatusCode, a.Final, w.dest, w.n, w.outcome, w.status, w.final)
		}
		if a.EventID != "ev-1" || a.Duration != 1500*time.Microsecond || a.ResponseSnippet != fmt.Sprint("snippet ", w.n) {
			t.Errorf("attempt %d = %+v", i, a)
		}
		if a.TraceID != fmt.Sprintf("%032x", w.n) {
			t.Errorf("attempt %d trace_id = %q", i, a.TraceID)
		}
		if a.TransformVersion != fmt.Sprintf("%012x", 0xabc000+w.n) {
			t.Errorf("attempt %d transform_version = %q", i, a.TransformVersion)
		}
		if a.ID != fmt.Sprintf("attempt:EVENTS:42:%s:%d:ev-1", w.dest, w.n) {
			t.Errorf("attempt %d id = %q", i, a.ID)
		}
		if (w.outcome == "delivered") != (a.Error == "") {
			t.Errorf("attempt %d error = %q", i, a.Error)
		}
	}
	if !d.Attempts[0].StartedAt.Equal(base.Add(time.Minute)) {
		t.Errorf("first attempt started %v, want %v", d.Attempts[0].StartedAt, base.Add(time.Minute))
	}

	if len(d.DeadLetters) != 1 {
		t.Fatalf("%d dead letters, want 1", len(d.DeadLetters))
	}
	dl := d.DeadLetters[0]
	want := store.DeadLetter{
		ID: "EVENTS:42:erp:ev-1", EventID: "ev-1", Destination: "erp", Subject: "webhooks.shop.order_created",
		Reason: "max_attempts", Attempts: 3, LastStatusCode: 503, LastError: "HTTP 503 Service Unavailable",
		ResponseSnippet: "down", StreamSeq: 42,
	}
	at := dl.DeadLetteredAt
	dl.DeadLetteredAt = time.Time{}
	if dl != want {
		t.Errorf("dead letter = %+v\nwant %+v", dl, want)
	}
	if !at.Equal(base.Add(4 * time.Minute)) {
		t.Errorf("dead lettered at %v, want %v", at, base.Add(4*time.Minute))
	}
}

// CheckEvent compares a stored event with what was written.
func CheckEvent(t *testing.T, got *store.Event, want store.Event) {
	t.Helper()
	if got == nil {
		t.Fatal("event not found")
	}
	if got.ID != want.ID || got.Subject != want.Subject || got.Source != want.Source || got.Type != want.Type ||
		got.StreamSeq != want.StreamSeq || got.ContentType != want.ContentType {
		t.Errorf("event = %+v\nwant %+v", got, want)
	}
	if !got.ReceivedAt.Equal(want.ReceivedAt) {
		t.Errorf("received at %v, want %v", got.ReceivedAt, want.ReceivedAt)
	}
	if !bytes.Equal(got.Payload, want.Payload) {
		t.Errorf("payload = %q, want %q", got.Payload, want.Payload)
	}
	if !maps.Equal(got.Headers, want.Headers) && (len(got.Headers) != 0 || len(want.Headers) != 0) {
		t.Errorf("headers = %v, want %v", got.Headers, want.Headers)
	}
}

func testRewrite(t *testing.T, st store.Store) {
	migrate(t, st)
	b := FullBatch("ev-rewrite")
	write(t, st, b)
	before := get(t, st, "ev-rewrite")
	rejBefore, _, err := st.ListRejections(ctx(t), store.RejectionFilter{}, store.Page{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}

	// Replaying the stream: the same records again, some changed in flight
	// (a later copy must not overwrite the first).
	again := FullBatch("ev-rewrite")
	again.Events[0].Payload = []byte(`{"order":"changed"}`)
	again.Records[1].GetDeliveryAttempt().StatusCode = 599
	write(t, st, again)
	write(t, st, b)

	after := get(t, st, "ev-rewrite")
	if len(after.Attempts) != len(before.Attempts) || len(after.DeadLetters) != len(before.DeadLetters) {
		t.Errorf("after re-writing: %d attempts, %d dead letters; before: %d, %d",
			len(after.Attempts), len(after.DeadLetters), len(before.Attempts), len(before.DeadLetters))
	}
	CheckEvent(t, after.Event, b.Events[0].Event)
	for _, a := range after.Attempts {
		if a.StatusCode == 599 {
			t.Error("a re-written attempt overwrote the stored one")
		}
	}
	rejAfter, _, err := st.ListRejections(ctx(t), store.RejectionFilter{}, store.Page{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(rejAfter) != len(rejBefore) || len(rejAfter) != 1 {
		t.Errorf("%d rejections after re-writing, %d before, want 1", len(rejAfter), len(rejBefore))
	}
}

func testDuplicatesWithinBatch(t *testing.T, st store.Store) {
	migrate(t, st)
	// A record re-emitted after a crash can land in the same batch as the
	// first copy (beyond the stream's duplicate window).
	b := FullBatch("ev-dup")
	b.Events = append(b.Events, b.Events[0])
	b.Records = append(b.Records, b.Records...)
	write(t, st, b)
	d := get(t, st, "ev-dup")
	if len(d.Attempts) != 4 || len(d.DeadLetters) != 1 || d.Event == nil {
		t.Errorf("got %d attempts, %d dead letters, event %v; want 4, 1, present", len(d.Attempts), len(d.DeadLetters), d.Event != nil)
	}
	rs, _, err := st.ListRejections(ctx(t), store.RejectionFilter{}, store.Page{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 {
		t.Errorf("%d rejections, want 1", len(rs))
	}
}

func testAttemptsBeforeEvent(t *testing.T, st store.Store) {
	migrate(t, st)
	// The dispatcher's records (AUDIT) can be written before the event
	// (EVENTS): the two streams are consumed independently.
	write(t, st, store.Batch{Records: []*switchyardv1.AuditRecord{
		Attempt("ev-early", "erp", 1, base, 200, switchyardv1.Outcome_OUTCOME_DELIVERED, true),
	}})
	d := get(t, st, "ev-early")
	if d.Event != nil {
		t.Errorf("event = %+v, want nil before it is written", d.Event)
	}
	if len(d.Attempts) != 1 || d.Attempts[0].Outcome != "delivered" {
		t.Errorf("attempts = %+v", d.Attempts)
	}
	if len(d.DeadLetters) != 0 {
		t.Errorf("dead letters = %+v", d.DeadLetters)
	}

	ev := Event("ev-early", []byte(`{}`))
	write(t, st, store.Batch{Events: []store.Routed{ev}})
	d = get(t, st, "ev-early")
	CheckEvent(t, d.Event, ev.Event)
	if len(d.Attempts) != 1 {
		t.Errorf("%d attempts after the event arrived, want 1", len(d.Attempts))
	}
}

func testDeadLetterOnly(t *testing.T, st store.Store) {
	migrate(t, st)
	write(t, st, store.Batch{Records: []*switchyardv1.AuditRecord{DeadLetter("ev-dl", "erp", base)}})
	d := get(t, st, "ev-dl")
	if d.Event != nil || len(d.Attempts) != 0 || len(d.DeadLetters) != 1 {
		t.Errorf("detail = %+v", d)
	}
}

func testNotFound(t *testing.T, st store.Store) {
	migrate(t, st)
	write(t, st, FullBatch("ev-present"))
	for _, id := range []string{"ev-missing", "", "ev-present'; DROP TABLE events; --", "rej-ev-present"} {
		_, err := st.GetEvent(ctx(t), id)
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetEvent(%q) = %v, want ErrNotFound", id, err)
		}
	}
	get(t, st, "ev-present")
}

func testPayloads(t *testing.T, st store.Store) {
	migrate(t, st)
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	tests := []struct {
		id      string
		payload []byte
	}{
		{"ev-binary", binary},
		{"ev-empty", []byte{}},
		{"ev-nil", nil},
		{"ev-utf8", []byte("ünïcödé ✓ \u0000 nul")},
		{"ev-large", bytes.Repeat([]byte("0123456789"), 100_000)},
	}
	var b store.Batch
	for _, tt := range tests {
		ev := Event(tt.id, tt.payload)
		ev.Headers = nil
		b.Events = append(b.Events, ev)
	}
	write(t, st, b)
	for _, tt := range tests {
		d := get(t, st, tt.id)
		if d.Event == nil {
			t.Fatalf("%s not found", tt.id)
		}
		if !bytes.Equal(d.Event.Payload, tt.payload) {
			t.Errorf("%s: payload of %d bytes came back as %d bytes", tt.id, len(tt.payload), len(d.Event.Payload))
		}
		if len(d.Event.Headers) != 0 {
			t.Errorf("%s: headers = %v, want none", tt.id, d.Event.Headers)
		}
	}
}

func testListRejections(t *testing.T, st store.Store) {
	migrate(t, st)
	rs, _, err := st.ListRejections(ctx(t), store.RejectionFilter{}, store.Page{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 0 {
		t.Fatalf("empty store lists %d rejections", len(rs))
	}
	// Written out of order; two share a timestamp (ordered by id then).
	write(t, st, store.Batch{Records: []*switchyardv1.AuditRecord{
		Rejection("r2", base.Add(2*time.Second)),
		Rejection("r5", base.Add(5*time.Second)),
		Rejection("r1", base.Add(1*time.Second)),
		Rejection("r4a", base.Add(4*time.Second)),
		Rejection("r4b", base.Add(4*time.Second)),
	}})
	write(t, st, store.Batch{Records: []*switchyardv1.AuditRecord{Rejection("r3", base.Add(3*time.Second))}})

	all, _, err := st.ListRejections(ctx(t), store.RejectionFilter{}, store.Page{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range all {
		ids = append(ids, r.ID)
	}
	if want := "[r5 r4b r4a r3 r2 r1]"; fmt.Sprint(ids) != want {
		t.Errorf("order = %v, want newest first %s", ids, want)
	}
	top, _, err := st.ListRejections(ctx(t), store.RejectionFilter{}, store.Page{Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(top) != 2 || top[0].ID != "r5" || top[1].ID != "r4b" {
		t.Errorf("limit 2 = %+v", top)
	}
	r := all[0]
	want := store.Rejection{
		ID: "r5", Source: "shop", Reason: "bad_signature", Detail: "signature does not match",
		RemoteAddr: "203.0.113.7", StatusCode: 401, EventID: "msg_r5", UserAgent: "partner/1.0", BodySize: 20,
	}
	at := r.At
	r.At = time.Time{}
	if r != want {
		t.Errorf("rejection = %+v\nwant %+v", r, want)
	}
	if !at.Equal(base.Add(5 * time.Second)) {
		t.Errorf("at = %v, want %v", at, base.Add(5*time.Second))
	}
	// A publish-API rejection names the key (never the key itself).
	api := Rejection("r-api", base.Add(6*time.Second))
	w := api.GetWebhookRejected()
	w.Source, w.ApiKey, w.BodySize, w.UserAgent = "_api", "billing-service", 1<<20, ""
	write(t, st, store.Batch{Records: []*switchyardv1.AuditRecord{api}})
	top, _, err = st.ListRejections(ctx(t), store.RejectionFilter{Source: "_api"}, store.Page{})
	if err != nil || len(top) != 1 || top[0].APIKey != "billing-service" || top[0].BodySize != 1<<20 || top[0].UserAgent != "" {
		t.Errorf("publish-API rejection = %+v (%v)", top, err)
	}
}

func testConcurrentWrites(t *testing.T, st store.Store) {
	migrate(t, st)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			// Half the writers write the same batch, half their own.
			id := "ev-shared"
			if i%2 == 1 {
				id = fmt.Sprint("ev-own-", i)
			}
			errs[i] = st.Write(ctx(t), FullBatch(id))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	if d := get(t, st, "ev-shared"); len(d.Attempts) != 4 || d.Event == nil {
		t.Errorf("shared event: %d attempts, event %v", len(d.Attempts), d.Event != nil)
	}
	for i := 1; i < len(errs); i += 2 {
		get(t, st, fmt.Sprint("ev-own-", i))
	}
}

// A partner's response (the attempt snippet), its event type or a header can
// hold NUL characters. Postgres text and jsonb refuse them; a batch that
// can never be written would stop the audit writer for good, so the store
// must take them.
func testNULCharacters(t *testing.T, st store.Store) {
	migrate(t, st)
	ev := Event("ev-nul", []byte("pay\x00load"))
	ev.Type = "order\x00created"
	ev.Headers = map[string]string{"Switchyard-Event-Type": "order\x00created", "X-Nul\x00": "v"}
	att := Attempt("ev-nul", "erp", 1, base, 500, switchyardv1.Outcome_OUTCOME_RETRYABLE, false)
	att.GetDeliveryAttempt().ResponseSnippet = "\x00\x01binary error page"
	att.GetDeliveryAttempt().Error = "HTTP 500 \x00"
	att.GetDeliveryAttempt().TraceId = "\x00not a trace id\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
	att.GetDeliveryAttempt().TransformVersion = "\x00abcdef\x001234"
	dl := DeadLetter("ev-nul", "erp", base)
	dl.GetDeadLettered().ResponseSnippet = "gz\x00ip"
	dl.GetDeadLettered().LastError = "err\x00"
	rej := Rejection("rej-nul", base)
	rej.GetWebhookRejected().Detail = "bad \x00 header"
	alert := &switchyardv1.AuditRecord{Id: "alert-nul", Time: timestamppb.New(base), Service: "notifier", Detail: &switchyardv1.AuditRecord_Alert{
		Alert: &switchyardv1.AlertNotification{Rule: "DeliveryDeadLettered", Error: "Slack answered 400 \x00", Labels: map[string]string{"k\x00": "v\x00"}},
	}}
	write(t, st, store.Batch{Events: []store.Routed{ev}, Records: []*switchyardv1.AuditRecord{att, dl, rej, alert}})

	d := get(t, st, "ev-nul")
	if d.Event == nil || len(d.Attempts) != 1 || len(d.DeadLetters) != 1 {
		t.Fatalf("detail = %+v", d)
	}
	if !bytes.Equal(d.Event.Payload, ev.Payload) {
		t.Errorf("payload = %q: the payload is bytes and must come back as written", d.Event.Payload)
	}
	if !strings.HasPrefix(d.Event.Type, "order") || !strings.HasSuffix(d.Event.Type, "created") {
		t.Errorf("type = %q", d.Event.Type)
	}
	if d.Attempts[0].TraceID != "" {
		t.Errorf("trace_id = %q: only a trace id (32 hex digits) is kept", d.Attempts[0].TraceID)
	}
	if d.Attempts[0].TransformVersion != "" {
		t.Errorf("transform_version = %q: only a version (12 hex digits) is kept", d.Attempts[0].TransformVersion)
	}
	if !strings.Contains(d.Attempts[0].ResponseSnippet, "binary error page") {
		t.Errorf("snippet = %q", d.Attempts[0].ResponseSnippet)
	}
	rs, _, err := st.ListRejections(ctx(t), store.RejectionFilter{}, store.Page{Limit: 10})
	if err != nil || len(rs) != 1 {
		t.Fatalf("rejections = %v, %v", rs, err)
	}
}

// AlertRecord returns an alert notification record fixture: a firing
// DeliveryDeadLettered message on destination erp, delivered by slack.
func AlertRecord(id string, at time.Time) *switchyardv1.AuditRecord {
	return &switchyardv1.AuditRecord{
		Id:      id,
		Time:    timestamppb.New(at),
		Service: "notifier",
		Detail: &switchyardv1.AuditRecord_Alert{Alert: &switchyardv1.AlertNotification{
			Fingerprint: "fp-" + id,
			Rule:        "DeliveryDeadLettered",
			Labels:      map[string]string{"destination": "erp"},
			State:       switchyardv1.AlertState_ALERT_STATE_FIRING,
			Severity:    "critical",
			Summary:     "3 deliveries dead-lettered on erp",
			Sender:      "slack",
			Delivered:   true,
			Count:       3,
			Kind:        "firing",
			Sequence:    1,
			Episode:     1,
			FirstSeen:   timestamppb.New(at.Add(-time.Minute)),
			Attempts:    1,
		}},
	}
}

// testEventIncarnations: an id stored again for another EVENTS message (a
// later sequence, another stream incarnation) keeps the first row and
// lists every message as an incarnation; the same message again (a
// redelivery, in another batch or the same one) adds none.
func testEventIncarnations(t *testing.T, st store.Store) {
	migrate(t, st)
	first := Event("reused", []byte(`{"v":1}`))
	first.StreamSeq, first.Incarnation = 10, "inc-a"
	write(t, st, store.Batch{Events: []store.Routed{first}})
	write(t, st, store.Batch{Events: []store.Routed{first}})

	again := Event("reused", []byte(`{"v":2}`))
	again.StreamSeq, again.Incarnation, again.ReceivedAt = 42, "inc-a", first.ReceivedAt.Add(time.Hour)
	recreated := Event("reused", []byte(`{"v":3}`))
	recreated.StreamSeq, recreated.Incarnation, recreated.ReceivedAt = 10, "inc-b", first.ReceivedAt.Add(2*time.Hour)
	write(t, st, store.Batch{Events: []store.Routed{again, recreated, again}})
	write(t, st, store.Batch{Events: []store.Routed{recreated}})

	d := get(t, st, "reused")
	if d.Event == nil || d.Event.StreamSeq != 10 || d.Event.Incarnation != "inc-a" || string(d.Event.Payload) != `{"v":1}` {
		t.Fatalf("event = %+v, want the first message", d.Event)
	}
	want := []struct {
		inc string
		seq uint64
	}{{"inc-a", 10}, {"inc-a", 42}, {"inc-b", 10}}
	if len(d.Incarnations) != len(want) {
		t.Fatalf("incarnations = %+v, want %v", d.Incarnations, want)
	}
	for i, w := range want {
		x := d.Incarnations[i]
		if x.Incarnation != w.inc || x.StreamSeq != w.seq || x.PayloadHash == "" || x.PayloadSize != 7 {
			t.Errorf("incarnation %d = %+v, want %s #%d", i, x, w.inc, w.seq)
		}
	}
	if d.Incarnations[1].PayloadHash == d.Incarnations[0].PayloadHash {
		t.Error("the second incarnation has the first's payload hash")
	}
}
