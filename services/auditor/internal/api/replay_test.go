package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/events"
	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
	"github.com/switchyard/switchyard/services/auditor/internal/store/storetest"
)

// replayEnv is an API with NATS, over a store holding one dead-lettered
// event, and a clock the test moves.
type replayEnv struct {
	js  jetstream.JetStream
	st  store.Store
	h   http.Handler
	now atomic.Int64
}

func newReplayEnv(t *testing.T, st store.Store, adjust ...func(*Config)) *replayEnv {
	t.Helper()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	e := &replayEnv{js: js, st: st}
	e.now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, e.now.Load()) }
	cfg := Config{Store: st, JS: js, Audit: auditlog.NewEmitter(js, "auditor").WithClock(clock), Now: clock, Logger: natstest.Logger(t),
		Destinations: []string{"erp", "crm"}}
	for _, a := range adjust {
		a(&cfg)
	}
	e.h = New(cfg)
	return e
}

// deadLetter publishes event id (on events.order.created), stores it and
// its dead letter for erp as the writer would, and returns the dead letter
// id.
func (e *replayEnv) deadLetter(t *testing.T, id string, payload []byte) string {
	t.Helper()
	pub, err := events.Publish(testCtx(t), e.js, events.Event{ID: id, Type: "order.created", Data: payload})
	if err != nil {
		t.Fatal(err)
	}
	ev := storetest.Event(id, payload)
	ev.Subject, ev.StreamSeq = "events.order.created", pub.Sequence
	ev.Headers = map[string]string{"X-Trace": "t-" + id, events.HeaderEventID: id, events.HeaderContentType: "application/json"}
	dl := storetest.RoundDeadLetter(id, "erp", pub.Sequence, time.Unix(0, e.now.Load()), "")
	dl.GetDeadLettered().Subject = ev.Subject
	write(t, e.st, store.Batch{Events: []store.Routed{ev}, Records: []*switchyardv1.AuditRecord{dl}})
	return dl.GetDeadLettered().Id
}

func (e *replayEnv) post(t *testing.T, path, key string, body any) (int, []byte) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req := localRequest(http.MethodPost, path, rd)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderRequestedBy, "test")
	if key != "" {
		req.Header.Set(HeaderIdempotencyKey, key)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

func (e *replayEnv) replay(t *testing.T, dlID, key string, wantCode int) auditapi.ReplayResult {
	t.Helper()
	code, body := e.post(t, "/v1/dead-letters/"+dlID+"/replay", key, nil)
	if code != wantCode {
		t.Fatalf("replay %s: %d %s, want %d", dlID, code, body, wantCode)
	}
	var res auditapi.ReplayResult
	if err := json.Unmarshal(body, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

func replays(t *testing.T, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	return natstest.StreamMsgs(t, js, natsx.StreamEvents, "replay.>")
}

func TestReplayDeadLetter(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, st store.Store) {
		e := newReplayEnv(t, st)
		dlID := e.deadLetter(t, "ev-r", []byte(`{"order":1042}`))

		res := e.replay(t, dlID, "", http.StatusAccepted)
		if res.Duplicate || res.Subject != "replay.erp.events.order.created" || res.MsgID != "replay:"+dlID+":1" || res.StreamSeq < 2 {
			t.Errorf("result = %+v", res)
		}
		msgs := replays(t, e.js)
		if len(msgs) != 1 {
			t.Fatalf("%d replay messages, want 1", len(msgs))
		}
		m := msgs[0]
		for k, want := range map[string]string{
			events.HeaderEventID: "ev-r", events.HeaderReplayOf: dlID, events.HeaderContentType: "application/json",
			"X-Trace": "t-ev-r", nats.MsgIdHdr: res.MsgID,
		} {
			if got := m.Header.Get(k); got != want {
				t.Errorf("replay header %s = %q, want %q", k, got, want)
			}
		}
		if string(m.Data) != `{"order":1042}` || m.Subject != res.Subject {
			t.Errorf("replay message %s %q", m.Subject, m.Data)
		}

		// A double click: the same message id, stored once.
		again := e.replay(t, dlID, "", http.StatusOK)
		if !again.Duplicate || again.MsgID != res.MsgID || again.StreamSeq != res.StreamSeq {
			t.Errorf("second click = %+v, want the duplicate of %+v", again, res)
		}
		if n := len(replays(t, e.js)); n != 1 {
			t.Errorf("%d replay messages after a double click, want 1", n)
		}
		// Recorded once: in AUDIT (for the notifier and the writer) and in
		// the store at once.
		recs := natstest.AuditRecords(t, e.js, "audit.replayed.>")
		if len(recs) != 1 || recs[0].GetReplayed().GetDeadLetterId() != dlID || recs[0].GetReplayed().GetRequestedBy() != "test" ||
			recs[0].GetReplayed().GetStreamSeq() != res.StreamSeq {
			t.Errorf("Replayed records = %v", recs)
		}
		d, err := st.GetEvent(testCtx(t), "ev-r")
		if err != nil || len(d.Replays) != 1 || d.Deliveries[0].Status != auditapi.StatusReplayed {
			t.Errorf("after replay: replays %+v deliveries %+v (%v)", d.Replays, d.Deliveries, err)
		}

		// A deliberate replay later (past the duplicate window) goes out.
		e.now.Add(int64(3 * time.Minute))
		later := e.replay(t, dlID, "", http.StatusAccepted)
		if later.Duplicate || later.MsgID != "replay:"+dlID+":2" {
			t.Errorf("later replay = %+v", later)
		}
		// Within the window, a fresh Idempotency-Key forces one; the same
		// key again does not.
		forced := e.replay(t, dlID, "click-42", http.StatusAccepted)
		if forced.MsgID != "replay:"+dlID+":k:click-42" {
			t.Errorf("forced replay = %+v", forced)
		}
		e.replay(t, dlID, "click-42", http.StatusOK)
		if n := len(replays(t, e.js)); n != 3 {
			t.Errorf("%d replay messages, want 3", n)
		}
		dl, err := st.GetDeadLetter(testCtx(t), dlID)
		if err != nil || dl.Replays != 3 {
			t.Errorf("dead letter replays = %d (%v), want 3", dl.Replays, err)
		}

		code, body := e.post(t, "/v1/dead-letters/nope/replay", "", nil)
		if code != http.StatusNotFound || !strings.Contains(string(body), "not_found") {
			t.Errorf("unknown dead letter: %d %s", code, body)
		}
	})
}

// After retention dropped the event's body, the payload comes from the
// DEAD_LETTERS stream; when the dead letter there carries none (it was too
// large: payload_omitted) or is gone, from EVENTS while it holds the event;
// when nothing holds it, the answer says so.
func TestReplayPayloadAfterRetention(t *testing.T) {
	t.Parallel()
	st := backends["sqlite"](t)
	e := newReplayEnv(t, st)
	fromDLQ := e.deadLetter(t, "ev-old", []byte(`{"kept":"in the table"}`))
	fromEvents := e.deadLetter(t, "ev-events", []byte(`{"kept":"in EVENTS"}`))
	omitted := e.deadLetter(t, "ev-big", []byte(`{"big":"kept in EVENTS only"}`))
	gone := e.deadLetter(t, "ev-gone", []byte(`{}`))
	now := time.Unix(0, e.now.Load())
	if n, err := st.DropPayloads(testCtx(t), now.Add(time.Hour), now, 100); err != nil || n != 4 {
		t.Fatalf("DropPayloads = %d, %v", n, err)
	}
	// The dispatcher's copies: with the payload and the original headers,
	// and one whose payload was too large to carry.
	natstest.PublishDeadLetter(t, e.js, &switchyardv1.DeadLetter{Id: fromDLQ, EventId: "ev-old", Destination: "erp", Subject: "events.order.created",
		Payload: []byte(`{"kept":"in the stream"}`), Headers: map[string]string{"Content-Type": "application/json", "X-Trace": "from-dlq"}})
	bigDL, err := st.GetDeadLetter(testCtx(t), omitted)
	if err != nil {
		t.Fatal(err)
	}
	natstest.PublishDeadLetter(t, e.js, &switchyardv1.DeadLetter{Id: omitted, EventId: "ev-big", Destination: "erp", Subject: "events.order.created",
		StreamSeq: bigDL.StreamSeq, PayloadOmitted: true})
	// EVENTS lost ev-gone.
	goneDL, err := st.GetDeadLetter(testCtx(t), gone)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := e.js.Stream(testCtx(t), natsx.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteMsg(testCtx(t), goneDL.StreamSeq); err != nil {
		t.Fatal(err)
	}

	for dlID, want := range map[string]struct{ data, eventID, trace string }{
		fromDLQ:    {`{"kept":"in the stream"}`, "ev-old", "from-dlq"},
		fromEvents: {`{"kept":"in EVENTS"}`, "ev-events", ""},
		omitted:    {`{"big":"kept in EVENTS only"}`, "ev-big", ""},
	} {
		res := e.replay(t, dlID, "", http.StatusAccepted)
		var got *jetstream.RawStreamMsg
		for _, m := range replays(t, e.js) {
			if m.Header.Get(nats.MsgIdHdr) == res.MsgID {
				got = m
			}
		}
		if got == nil || string(got.Data) != want.data || got.Header.Get(events.HeaderEventID) != want.eventID ||
			got.Header.Get("X-Trace") != want.trace || got.Subject != res.Subject {
			t.Errorf("replay of %s = %+v, want %q for %s", dlID, got, want.data, want.eventID)
		}
	}
	code, body := e.post(t, "/v1/dead-letters/"+gone+"/replay", "", nil)
	if code != http.StatusGone || !strings.Contains(string(body), "payload_gone") {
		t.Errorf("replay without a payload anywhere: %d %s, want 410", code, body)
	}
	// A reconciled dead letter of an event EVENTS no longer had: no payload
	// is known at all.
	write(t, st, store.Batch{Records: []*switchyardv1.AuditRecord{storetest.RoundDeadLetter("", "erp", 99, now, "")}})
	code, body = e.post(t, "/v1/dead-letters/EVENTS:99:erp/replay", "", nil)
	if code != http.StatusGone || !strings.Contains(string(body), "no longer in EVENTS") {
		t.Errorf("replay of an unknown event's dead letter: %d %s, want 410", code, body)
	}
	if n := len(replays(t, e.js)); n != 3 {
		t.Errorf("%d replays published, want 3", n)
	}
}

func TestBulkReplay(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, st store.Store) {
		e := newReplayEnv(t, st)
		for _, id := range []string{"ev-b1", "ev-b2", "ev-b3"} {
			e.deadLetter(t, id, []byte(`{}`))
		}
		// Not a current dead letter: delivered to crm.
		write(t, st, store.Batch{Records: []*switchyardv1.AuditRecord{
			storetest.Attempt("ev-b1", "crm", 1, time.Now(), 200, switchyardv1.Outcome_OUTCOME_DELIVERED, true),
		}})

		for _, bad := range []any{map[string]any{}, map[string]any{"destination": "erp", "limit": 5000}} {
			if code, body := e.post(t, "/v1/dead-letters/replay", "", bad); code != http.StatusBadRequest {
				t.Errorf("bulk %v: %d %s, want 400", bad, code, body)
			}
		}
		code, body := e.post(t, "/v1/dead-letters/replay", "", auditapi.BulkReplayRequest{Destination: "erp", DryRun: true})
		var dry auditapi.BulkReplayResult
		_ = json.Unmarshal(body, &dry)
		if code != http.StatusOK || dry.Matched != 3 || dry.Replayed != 0 || !dry.DryRun || len(replays(t, e.js)) != 0 {
			t.Fatalf("dry run: %d %s", code, body)
		}
		code, body = e.post(t, "/v1/dead-letters/replay", "", auditapi.BulkReplayRequest{Destination: "erp", Limit: 2})
		var res auditapi.BulkReplayResult
		_ = json.Unmarshal(body, &res)
		if code != http.StatusOK || res.Matched != 2 || res.Replayed != 2 || res.Failed != 0 {
			t.Fatalf("bulk replay: %d %s", code, body)
		}
		code, body = e.post(t, "/v1/dead-letters/replay", "", auditapi.BulkReplayRequest{Destination: "erp"})
		_ = json.Unmarshal(body, &res)
		if code != http.StatusOK || res.Matched != 1 || res.Replayed != 1 {
			t.Fatalf("second bulk replay: %d %s, want only the one left", code, body)
		}
		code, body = e.post(t, "/v1/dead-letters/replay", "", auditapi.BulkReplayRequest{Destination: "erp"})
		_ = json.Unmarshal(body, &res)
		if code != http.StatusOK || res.Matched != 0 {
			t.Errorf("third bulk replay: %d %s, want nothing left to replay", code, body)
		}
		if n := len(replays(t, e.js)); n != 3 {
			t.Errorf("%d replays published, want 3 (one per dead letter)", n)
		}
		for _, m := range replays(t, e.js) {
			if !strings.HasPrefix(m.Subject, "replay.erp.") {
				t.Errorf("replay to %s: only erp failed", m.Subject)
			}
		}
	})
}

// A replay goes to replay.<destination>.>, which only a configured
// destination's consumer reads: one to a destination no longer configured
// would be accepted and never delivered, so it is refused, saying why.
func TestReplayToUnconfiguredDestination(t *testing.T) {
	t.Parallel()
	st := backends["sqlite"](t)
	e := newReplayEnv(t, st)
	write(t, st, store.Batch{Records: []*switchyardv1.AuditRecord{storetest.RoundDeadLetter("ev-l", "legacy", 7, time.Now(), "")}})
	code, body := e.post(t, "/v1/dead-letters/EVENTS:7:legacy/replay", "", nil)
	if code != http.StatusConflict || !strings.Contains(string(body), "destination_not_configured") ||
		!strings.Contains(string(body), `\"legacy\"`) || !strings.Contains(string(body), "erp, crm") {
		t.Errorf("replay to an unconfigured destination: %d %s, want 409 naming it and the configured ones", code, body)
	}
	code, body = e.post(t, "/v1/dead-letters/replay", "", auditapi.BulkReplayRequest{Destination: "legacy"})
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(body), "destination_not_configured") {
		t.Errorf("bulk replay to an unconfigured destination: %d %s, want 422", code, body)
	}
	if n := len(replays(t, e.js)); n != 0 {
		t.Errorf("%d replays published, want none", n)
	}
}

// Request bodies are bounded; with or without a Content-Length, a larger
// one is answered 413.
func TestRequestBodyLimit(t *testing.T) {
	t.Parallel()
	st := backends["sqlite"](t)
	e := newReplayEnv(t, st)
	big := auditapi.BulkReplayRequest{Destination: "erp", Q: strings.Repeat("x", 300<<10)}
	code, body := e.post(t, "/v1/dead-letters/replay", "", big)
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "body_too_large") {
		t.Errorf("large bulk replay body: %d %.200s, want 413", code, body)
	}
	b, _ := json.Marshal(big)
	for _, path := range []string{"/v1/dead-letters/replay", "/v1/silences"} {
		// No Content-Length: cut off while read.
		req := localRequest(http.MethodPost, path, io.NopCloser(bytes.NewReader(b)))
		req.ContentLength = -1
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), "body_too_large") {
			t.Errorf("%s, chunked large body: %d %.200s, want 413", path, rec.Code, rec.Body)
		}
	}
	if code, body := e.post(t, "/v1/dead-letters/replay", "", auditapi.BulkReplayRequest{Destination: "erp", DryRun: true}); code != http.StatusOK {
		t.Errorf("small body: %d %s", code, body)
	}
}

// A bulk replay answers within its time budget (the server's write timeout
// must not cut the answer off): what it did not get to is reported, and the
// same request again goes on from there, replaying each dead letter once.
func TestBulkReplayBudget(t *testing.T) {
	t.Parallel()
	st := backends["sqlite"](t)
	e := newReplayEnv(t, st, func(c *Config) { c.BulkReplayBudget = time.Nanosecond })
	for i := range 3 {
		e.deadLetter(t, fmt.Sprint("ev-budget-", i), []byte(`{}`))
	}
	var rounds []auditapi.BulkReplayResult
	for len(rounds) < 10 {
		code, body := e.post(t, "/v1/dead-letters/replay", "", auditapi.BulkReplayRequest{Destination: "erp"})
		var res auditapi.BulkReplayResult
		if err := json.Unmarshal(body, &res); err != nil || code != http.StatusOK {
			t.Fatalf("bulk replay: %d %s", code, body)
		}
		rounds = append(rounds, res)
		if !res.Incomplete {
			break
		}
		if res.Replayed != 1 || res.Remaining != res.Matched-1 {
			t.Errorf("incomplete round = %+v, want one replayed (at least one per request) and the rest remaining", res)
		}
	}
	if len(rounds) != 3 || rounds[0].Matched != 3 || rounds[0].Remaining != 2 {
		t.Errorf("rounds = %+v, want 3 requests of one replay each", rounds)
	}
	if n := len(replays(t, e.js)); n != 3 {
		t.Errorf("%d replays published, want 3 (each dead letter once)", n)
	}
}

func TestDestinations(t *testing.T) {
	t.Parallel()
	st := backends["sqlite"](t)
	e := newReplayEnv(t, st)
	// The dispatcher's consumer for erp, with three events waiting.
	if _, err := e.js.CreateOrUpdateConsumer(testCtx(t), natsx.StreamEvents, jetstream.ConsumerConfig{
		Durable: dispatcherConsumer("erp"), FilterSubjects: []string{"events.order.>"}, AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		if _, err := events.Publish(testCtx(t), e.js, events.Event{ID: id, Type: "order.created", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Unix(0, e.now.Load())
	write(t, st, store.Batch{Records: []*switchyardv1.AuditRecord{
		storetest.RoundAttempt("x", "erp", 1, 1, now.Add(-time.Minute), 200, switchyardv1.Outcome_OUTCOME_DELIVERED, true, ""),
		storetest.RoundAttempt("y", "erp", 2, 1, now.Add(-time.Minute), 503, switchyardv1.Outcome_OUTCOME_RETRYABLE, false, ""),
		storetest.RoundAttempt("z", "legacy", 3, 1, now.Add(-time.Minute), 200, switchyardv1.Outcome_OUTCOME_DELIVERED, true, ""),
	}})
	code, body := get(t, st, "/v1/destinations") // no NATS: no backlog
	if code != http.StatusOK {
		t.Fatalf("%d %v", code, body)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, localRequest(http.MethodGet, "/v1/destinations?window=15m", nil))
	var out auditapi.List[auditapi.DestinationStatus]
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	byName := map[string]auditapi.DestinationStatus{}
	var names []string
	for _, d := range out.Items {
		byName[d.Name] = d
		names = append(names, d.Name)
	}
	if strings.Join(names, ",") != "crm,erp,legacy" {
		t.Errorf("destinations = %v: configured and recorded ones, sorted", names)
	}
	erp := byName["erp"]
	if erp.Backlog == nil || erp.Backlog.Pending != 3 || erp.Attempts != 2 || erp.SuccessRate != 0.5 || erp.Window != "15m0s" ||
		erp.LastError != "HTTP 503" || erp.Breaker != "closed" {
		t.Errorf("erp = %+v (backlog %+v)", erp, erp.Backlog)
	}
	if byName["legacy"].Backlog != nil || byName["crm"].Attempts != 0 {
		t.Errorf("legacy = %+v, crm = %+v", byName["legacy"], byName["crm"])
	}
}
