package auditapi_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/auditlog"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
	"github.com/switchyard/switchyard/pkg/testing/testctx"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/auditor/internal/api"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
	"github.com/switchyard/switchyard/services/auditor/internal/store/storetest"
)

// The client is tested against the auditor's real handler, over a real
// store (Postgres and SQLite) and an embedded NATS server.

const token = "client-test-admin-token"

// corpusAt is when storetest.Corpus's data begins.
var corpusAt = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testCtx is the test's context (testctx.New).
var testCtx = testctx.New

// backends open a fresh, migrated store.
var backends = storetest.Backends

// server serves the API over st, with NATS (replays, silences), erp and
// crm configured, and the admin token required; it returns a client of
// it. The store holds storetest.Corpus, the other record kinds and one
// parked message.
func server(t *testing.T, st store.Store) *auditapi.Client {
	t.Helper()
	ctx := testCtx(t)
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	storetest.Corpus(t, st)
	if err := st.Write(ctx, store.Batch{Records: storetest.Others(corpusAt)}); err != nil {
		t.Fatal(err)
	}
	if err := st.Park(ctx, []store.Parked{{ID: "AUDIT:7", Stream: "AUDIT", Subject: "audit.other.x", StreamSeq: 7,
		Data: []byte("garbage"), Error: "decode: bad", ParkedAt: corpusAt}}); err != nil {
		t.Fatal(err)
	}
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	h := api.New(api.Config{Store: st, JS: js, Audit: auditlog.NewEmitter(js, "auditor"), AdminToken: token,
		Destinations: []string{"erp", "crm"}, Logger: natstest.Logger(t)})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &auditapi.Client{BaseURL: srv.URL, Token: token, RequestedBy: "client-test"}
}

func forEachBackend(t *testing.T, fn func(t *testing.T, c *auditapi.Client)) {
	t.Helper()
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, server(t, open(t)))
		})
	}
}

// pages follows the cursors of a list, three items a page, and returns
// every item's id; it fails the test if a page is longer than asked for or
// an item comes twice.
func pages[T any](t *testing.T, list func(q url.Values) (auditapi.List[T], error), q url.Values, id func(T) string) []string {
	t.Helper()
	q.Set("limit", "3")
	var ids []string
	for n := 0; ; n++ {
		page, err := list(q)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Items) > 3 {
			t.Fatalf("page of %d items, limit 3", len(page.Items))
		}
		for _, it := range page.Items {
			if slices.Contains(ids, id(it)) {
				t.Fatalf("%s listed twice", id(it))
			}
			ids = append(ids, id(it))
		}
		if page.NextCursor == "" {
			return ids
		}
		if n > 50 {
			t.Fatal("the pages never end")
		}
		q.Set("cursor", page.NextCursor)
	}
}

// Every list, followed through its cursors, with a filter.
func TestLists(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, c *auditapi.Client) {
		ctx := testCtx(t)
		events := pages(t, func(q url.Values) (auditapi.List[auditapi.Event], error) { return c.ListEvents(ctx, q) },
			url.Values{"source": {"shop"}}, func(e auditapi.Event) string { return e.ID })
		if len(events) != 15 || events[0] != "ev-28" || events[14] != "ev-00" {
			t.Errorf("shop's events = %v, want the 15 even ones, newest first", events)
		}
		deliveries := pages(t, func(q url.Values) (auditapi.List[auditapi.Delivery], error) { return c.ListDeliveries(ctx, q) },
			url.Values{"destination": {"erp"}, "status": {auditapi.StatusDeadLettered}}, func(d auditapi.Delivery) string { return d.EventID })
		if len(deadLettered(deliveries)) != 10 {
			t.Errorf("erp's dead-lettered deliveries = %v, want every third of 30", deliveries)
		}
		dls := pages(t, func(q url.Values) (auditapi.List[auditapi.DeadLetter], error) { return c.ListDeadLetters(ctx, q) },
			url.Values{"destination": {"erp"}}, func(d auditapi.DeadLetter) string { return d.ID })
		if len(dls) != 10 {
			t.Errorf("erp's dead letters = %v, want 10", dls)
		}
		dl, err := c.GetDeadLetter(ctx, dls[0])
		if err != nil || dl.ID != dls[0] || dl.Destination != "erp" || dl.Reason != "max_attempts" {
			t.Errorf("GetDeadLetter(%s) = %+v, %v", dls[0], dl, err)
		}
		rejections := pages(t, func(q url.Values) (auditapi.List[auditapi.Rejection], error) { return c.ListRejections(ctx, q) },
			url.Values{"reason": {"bad_signature"}}, func(r auditapi.Rejection) string { return r.ID })
		if len(rejections) != 6 {
			t.Errorf("bad-signature rejections = %v, want the 6 even ones", rejections)
		}
		alerts, err := c.ListAlerts(ctx, url.Values{"rule": {"DeliveryDeadLettered"}})
		if err != nil || len(alerts.Items) != 1 || alerts.Items[0].Sender != "slack" || alerts.Items[0].Labels["destination"] != "erp" {
			t.Errorf("alerts = %+v, %v", alerts, err)
		}
		records, err := c.ListRecords(ctx, url.Values{"kind": {"duplicate"}})
		if err != nil || len(records.Items) != 1 || records.Items[0].ID != "dup-1" || records.Items[0].Key != "shop" {
			t.Errorf("duplicate records = %+v, %v", records, err)
		}
		parked, err := c.ListParked(ctx, nil)
		if err != nil || len(parked.Items) != 1 || parked.Items[0].ID != "AUDIT:7" || string(parked.Items[0].Data) != "garbage" {
			t.Errorf("parked = %+v, %v", parked, err)
		}
		dests, err := c.ListDestinations(ctx, "15m")
		if err != nil || len(dests.Items) != 2 || dests.Items[0].Name != "crm" || dests.Items[1].Name != "erp" || dests.Items[1].Window != "15m0s" {
			t.Errorf("destinations = %+v, %v", dests, err)
		}
	})
}

func deadLettered(eventIDs []string) []string {
	var out []string
	for _, id := range eventIDs {
		var n int
		if _, err := fmt.Sscanf(id, "ev-%d", &n); err == nil && n%3 == 0 {
			out = append(out, id)
		}
	}
	return out
}

func TestGetEvent(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, c *auditapi.Client) {
		ev, err := c.GetEvent(testCtx(t), "ev-03")
		if err != nil {
			t.Fatal(err)
		}
		if !ev.Known || ev.ID != "ev-03" || ev.PayloadText == nil || *ev.PayloadText != `{"n":3}` || len(ev.Deliveries) != 1 ||
			ev.Deliveries[0].Status != auditapi.StatusDeadLettered || len(ev.Attempts) != 1 || len(ev.DeadLetters) != 1 {
			t.Errorf("event = %+v", ev)
		}
	})
}

// What goes wrong comes back as an *Error with the answer's status and the
// API's code, which the sentinels match.
func TestErrors(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, c *auditapi.Client) {
		ctx := testCtx(t)
		wrongToken := *c
		wrongToken.Token = "not-the-token"
		noToken := *c
		noToken.Token = ""
		_, errUnknownEvent := c.GetEvent(ctx, "no-such-event")
		_, errUnknownDL := c.GetDeadLetter(ctx, "no-such-dead-letter")
		_, errWrongToken := wrongToken.ListEvents(ctx, nil)
		_, errNoToken := noToken.ListSilences(ctx)
		_, errStatus := c.ListDeliveries(ctx, url.Values{"status": {"lost"}})
		_, errLimit := c.ListEvents(ctx, url.Values{"limit": {"0"}})
		_, errCursor := c.ListEvents(ctx, url.Values{"cursor": {"bogus"}})
		_, errKind := c.ListRecords(ctx, url.Values{"kind": {"attempt"}})
		_, errSilence := c.CreateSilence(ctx, auditapi.NewSilence{Matchers: []string{"dest=erp"}, Duration: "1h"})
		_, errNoSilence := c.GetSilence(ctx, "01J0000000000000000000000Z")
		_, errReplay := c.Replay(ctx, "no-such-dead-letter", "")
		_, errBulk := c.BulkReplay(ctx, auditapi.BulkReplayRequest{Destination: "legacy"}, "")
		for _, tt := range []struct {
			name     string
			err      error
			status   int
			code     string
			sentinel error
			// names is what the message must name for a person to act
			// on: the parameter, the label, the destination.
			names string
		}{
			{"unknown event", errUnknownEvent, 404, auditapi.CodeNotFound, auditapi.ErrNotFound, "no-such-event"},
			{"unknown dead letter", errUnknownDL, 404, auditapi.CodeNotFound, auditapi.ErrNotFound, "no-such-dead-letter"},
			{"wrong token", errWrongToken, 401, auditapi.CodeUnauthorized, auditapi.ErrUnauthorized, "Bearer"},
			{"no token", errNoToken, 401, auditapi.CodeUnauthorized, auditapi.ErrUnauthorized, "Bearer"},
			{"bad status filter", errStatus, 400, auditapi.CodeBadRequest, auditapi.ErrBadRequest, "status"},
			{"bad limit", errLimit, 400, auditapi.CodeBadRequest, auditapi.ErrBadRequest, "limit"},
			{"bad cursor", errCursor, 400, auditapi.CodeBadCursor, auditapi.ErrBadCursor, "cursor"},
			{"kind with a list of its own", errKind, 400, auditapi.CodeBadRequest, auditapi.ErrBadRequest, "/v1/events/{id}"},
			{"bad silence matcher", errSilence, 400, auditapi.CodeInvalidSilence, auditapi.ErrInvalidSilence, `"dest"`},
			{"unknown silence", errNoSilence, 404, auditapi.CodeNotFound, auditapi.ErrNotFound, "01J0000000000000000000000Z"},
			{"replay of an unknown dead letter", errReplay, 404, auditapi.CodeNotFound, auditapi.ErrNotFound, "no-such-dead-letter"},
			{"bulk replay to an unconfigured destination", errBulk, 422, auditapi.CodeDestinationNotConfigured, nil, "legacy"},
		} {
			var apiErr *auditapi.Error
			if !errors.As(tt.err, &apiErr) {
				t.Errorf("%s: %v (%T), want an *auditapi.Error", tt.name, tt.err, tt.err)
				continue
			}
			if apiErr.Status != tt.status || apiErr.Code != tt.code {
				t.Errorf("%s: %d %s, want %d %s", tt.name, apiErr.Status, apiErr.Code, tt.status, tt.code)
			}
			if tt.sentinel != nil && !errors.Is(tt.err, tt.sentinel) {
				t.Errorf("%s: errors.Is(%v, %v) = false", tt.name, tt.err, tt.sentinel)
			}
			if errors.Is(tt.err, auditapi.ErrUnreachable) {
				t.Errorf("%s: an answer is not ErrUnreachable", tt.name)
			}
			// The message is for a person: it must name what to fix.
			if !strings.Contains(apiErr.Message, tt.names) {
				t.Errorf("%s: message %q does not name %q", tt.name, apiErr.Message, tt.names)
			}
		}
		// Another sentinel's code does not match.
		if errors.Is(errUnknownEvent, auditapi.ErrUnauthorized) {
			t.Error("a 404 matches ErrUnauthorized")
		}
	})
}

// No answer at all is ErrUnreachable, not an *Error.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close() // nothing listens there any more
	c := &auditapi.Client{BaseURL: srv.URL}
	_, err := c.ListEvents(testCtx(t), nil)
	var apiErr *auditapi.Error
	if !errors.Is(err, auditapi.ErrUnreachable) || errors.As(err, &apiErr) {
		t.Errorf("ListEvents with nothing listening = %v, want ErrUnreachable", err)
	}
}

// An answer that is not the API's own (a proxy's 502 page) still comes back
// as an *Error, with a code from its status.
func TestForeignErrorAnswer(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
	}))
	t.Cleanup(srv.Close)
	_, err := (&auditapi.Client{BaseURL: srv.URL}).ListEvents(testCtx(t), nil)
	var apiErr *auditapi.Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusBadGateway || apiErr.Code != "bad_gateway" || apiErr.Message != "<html>bad gateway</html>" {
		t.Errorf("err = %#v", err)
	}
}

// A replay is sent once per request key; a bulk dry run lists what it
// would send.
func TestReplay(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, c *auditapi.Client) {
		ctx := testCtx(t)
		dls, err := c.ListDeadLetters(ctx, url.Values{"destination": {"erp"}, "limit": {"1"}})
		if err != nil || len(dls.Items) != 1 {
			t.Fatalf("dead letters = %+v, %v", dls, err)
		}
		dl := dls.Items[0]
		first, err := c.Replay(ctx, dl.ID, "key-1")
		if err != nil || first.Duplicate || first.DeadLetterID != dl.ID || first.EventID != dl.EventID || first.MsgID == "" ||
			!strings.HasPrefix(first.Subject, "replay.erp.") || first.StreamSeq == 0 {
			t.Fatalf("Replay = %+v, %v", first, err)
		}
		again, err := c.Replay(ctx, dl.ID, "key-1")
		if err != nil || !again.Duplicate || again.MsgID != first.MsgID || again.StreamSeq != first.StreamSeq {
			t.Errorf("the same replay again = %+v, %v; want a duplicate of %+v", again, err, first)
		}
		got, err := c.GetDeadLetter(ctx, dl.ID)
		if err != nil || got.Replays != 1 {
			t.Errorf("dead letter after the replay = %+v, %v; want one replay", got, err)
		}

		dry, err := c.BulkReplay(ctx, auditapi.BulkReplayRequest{Destination: "erp", DryRun: true, Limit: 3}, "")
		if err != nil || !dry.DryRun || dry.Matched != 3 || dry.Replayed != 0 || len(dry.Results) != 3 || dry.Results[0].MsgID != "" {
			t.Errorf("bulk dry run = %+v, %v", dry, err)
		}
		bulk, err := c.BulkReplay(ctx, auditapi.BulkReplayRequest{Destination: "erp", Limit: 2}, "bulk-1")
		if err != nil || bulk.Matched != 2 || bulk.Replayed != 2 || bulk.Failed != 0 {
			t.Errorf("bulk replay = %+v, %v", bulk, err)
		}
	})
}

// A silence is made, listed, read and expired through the client.
func TestSilences(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, c *auditapi.Client) {
		ctx := testCtx(t)
		ends := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
		s, err := c.CreateSilence(ctx, auditapi.NewSilence{Matchers: []string{"destination=erp", "rule=~Partner.*"}, EndsAt: &ends,
			CreatedBy: "alice", Comment: "ERP upgrade"})
		if err != nil || s.ID == "" || s.State != "active" || !s.EndsAt.Equal(ends) || s.CreatedBy != "alice" ||
			!slices.Equal(s.Matchers, []string{"destination=erp", "rule=~Partner.*"}) {
			t.Fatalf("CreateSilence = %+v, %v", s, err)
		}
		list, err := c.ListSilences(ctx)
		if err != nil || len(list) != 1 || list[0].ID != s.ID {
			t.Errorf("ListSilences = %+v, %v", list, err)
		}
		got, err := c.GetSilence(ctx, s.ID)
		if err != nil || got.Comment != "ERP upgrade" {
			t.Errorf("GetSilence = %+v, %v", got, err)
		}
		expired, err := c.ExpireSilence(ctx, s.ID, "bob")
		if err != nil || expired.State != "expired" || expired.ExpiredBy != "bob" {
			t.Errorf("ExpireSilence = %+v, %v", expired, err)
		}
		byAPI, err := c.CreateSilence(ctx, auditapi.NewSilence{Matchers: []string{"source=shop"}, Duration: "30m"})
		if err != nil || byAPI.CreatedBy != "api" {
			t.Errorf("a silence made without CreatedBy = %+v, %v; want it made by api", byAPI, err)
		}
	})
}
