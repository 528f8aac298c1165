package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/switchyard/switchyard/pkg/untrusted"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
	"github.com/switchyard/switchyard/services/auditor/internal/store/storetest"
)

// seenStore is a real store that notes what the replay handlers asked it
// for, so that a test can check what they made of the request.
type seenStore struct {
	store.Store
	mu      sync.Mutex
	ids     []string
	filters []store.DeliveryFilter
	pages   []store.Page
}

func (s *seenStore) GetDeadLetter(ctx context.Context, id string) (store.DeadLetter, error) {
	s.mu.Lock()
	s.ids = append(s.ids, id)
	s.mu.Unlock()
	return s.Store.GetDeadLetter(ctx, id)
}

func (s *seenStore) ListDeliveries(ctx context.Context, f store.DeliveryFilter, p store.Page) ([]store.Delivery, string, error) {
	s.mu.Lock()
	s.filters, s.pages = append(s.filters, f), append(s.pages, p)
	s.mu.Unlock()
	return s.Store.ListDeliveries(ctx, f, p)
}

// reset forgets what was asked, for the next input.
func (s *seenStore) reset() {
	s.mu.Lock()
	s.ids, s.filters, s.pages = nil, nil, nil
	s.mu.Unlock()
}

// validHeaderValue reports whether net/http would pass v on as a header
// value: no control characters but tab (httpguts.ValidHeaderFieldValue).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

// FuzzReplayRequest sends the replay routes what a client can: any dead
// letter id in the path of POST /v1/dead-letters/{id}/replay, any
// Idempotency-Key and Switchyard-Requested-By, any body to POST
// /v1/dead-letters/replay. The API runs over a real (SQLite) store holding
// a dead letter for erp and one for legacy (not configured), and without
// NATS, so nothing is published. It checks that the id reaches the store
// exactly as sent, whatever its escaping, and is answered 404 naming it,
// 409 or 503 (no NATS); that a bulk body is refused with 400 exactly when
// it is not a JSON object the API can read, and otherwise answered as its
// fields say (destination required and configured, limit 1-1000), with the
// store asked for exactly the filter the body names; and that no request
// is answered 500 or with anything but JSON. Switchyard-Requested-By is
// read as a name safe for the audit record (UTF-8, no control characters,
// at most MaxRequestedBy bytes), one that already is as sent, trimmed;
// none as "api".
func FuzzReplayRequest(f *testing.F) {
	for _, s := range []struct{ id, key, by, body string }{
		{"EVENTS:1:erp", "", "", `{"destination":"erp","dry_run":true}`},
		{"EVENTS:2:legacy", "k1", "alice", `{"destination":"legacy"}`},
		{"EVENTS:9:erp", "", "ops bot", `{"destination":"erp","limit":5000}`},
		{"shop:msg_1/a%2Fb", "x", " ", `{"destination":"erp","event_id":"ev-1","source":"shop","q":"order","limit":1}`},
		{"é ?#", "\t", "é", `{"destination":"erp","since":"2026-01-01T00:00:00Z","until":"2027-01-01T00:00:00Z","dry_run":true}`},
		{"..", "", "", `{"destination":"crm","limit":-1}`},
		{"%", "", "", `{"destination":"erp"} trailing`},
		{"a b", "", "", `[]`},
		{"x", "", "", ``},
		{"y", "", "", `null`},
		{"z", "", "", `{"destination":1}`},
		{"w", "", "", `{"destination":"erp","since":"yesterday"}`},
	} {
		f.Add(s.id, s.key, s.by, []byte(s.body))
	}

	// One store for every input: opening a store per input would be the
	// whole cost of the fuzzing.
	st := &seenStore{Store: storetest.OpenSQLite(f)}
	if err := st.Migrate(testCtx(f)); err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	erpDL := storetest.RoundDeadLetter("ev-1", "erp", 1, now, "")
	legacyDL := storetest.RoundDeadLetter("ev-2", "legacy", 2, now, "")
	if err := st.Write(testCtx(f), store.Batch{Records: []*switchyardv1.AuditRecord{erpDL, legacyDL}}); err != nil {
		f.Fatal(err)
	}
	const token = "fuzz-admin-token"
	destinations := []string{"erp", "crm"}
	h := New(Config{Store: st, AdminToken: token, Destinations: destinations})

	serve := func(t *testing.T, path, key, by string, body []byte) (int, []byte) {
		t.Helper()
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set(HeaderIdempotencyKey, key)
		}
		if by != "" {
			req.Header.Set(HeaderRequestedBy, by)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("POST %s (%q): %d %s", path, body, rec.Code, rec.Body)
		}
		return rec.Code, rec.Body.Bytes()
	}
	problem := func(t *testing.T, code int, b []byte) auditapi.Error {
		t.Helper()
		var e auditapi.Error
		if err := json.Unmarshal(b, &e); err != nil || e.Code == "" || e.Message == "" {
			t.Fatalf("answer %d is not a JSON error: %s", code, b)
		}
		return e
	}

	f.Fuzz(func(t *testing.T, id, key, by string, body []byte) {
		// Headers net/http would refuse never reach the handler.
		if !validHeaderValue(key) || !validHeaderValue(by) {
			return
		}
		st.reset()

		// Who asked: a name that is safe to keep is kept as sent (trimmed);
		// none is "api".
		hreq := httptest.NewRequest(http.MethodPost, "/", nil)
		hreq.Header.Set(HeaderRequestedBy, by)
		got := requestedBy(echo.New().NewContext(hreq, httptest.NewRecorder()))
		switch want := strings.TrimSpace(by); {
		case got == "" || got != strings.TrimSpace(got) || !untrusted.Valid(got) || len(got) > MaxRequestedBy:
			t.Fatalf("Switchyard-Requested-By %q read as %q: not a safe name for the audit record", by, got)
		case want == "" && got != "api":
			t.Fatalf("no Switchyard-Requested-By read as %q, want api", got)
		case want != "" && len(want) <= MaxRequestedBy && untrusted.Valid(want) && got != want:
			t.Fatalf("Switchyard-Requested-By %q read as %q, want it as sent", by, got)
		}

		// One dead letter: the id, escaped into the path, reaches the
		// store as it is.
		if id != "" {
			path := "/v1/dead-letters/" + url.PathEscape(id) + "/replay"
			code, b := serve(t, path, key, by, nil)
			e := problem(t, code, b)
			if !slices.Equal(st.ids, []string{id}) {
				t.Fatalf("POST %s: the store was asked for %q, want [%q] (%d %s)", path, st.ids, id, code, b)
			}
			switch id {
			case erpDL.GetDeadLettered().GetId():
				if code != http.StatusServiceUnavailable || e.Code != auditapi.CodeUnavailable {
					t.Fatalf("replay of erp's dead letter without NATS: %d %s, want 503", code, b)
				}
			case legacyDL.GetDeadLettered().GetId():
				if code != http.StatusConflict || e.Code != auditapi.CodeDestinationNotConfigured {
					t.Fatalf("replay of legacy's dead letter: %d %s, want 409", code, b)
				}
			default:
				if code != http.StatusNotFound || e.Code != auditapi.CodeNotFound || e.Message != "no dead letter with id "+strconv.Quote(id) {
					t.Fatalf("replay of unknown %q: %d %s, want 404 naming it", id, code, b)
				}
			}
			st.reset()
		}

		// Bulk: the body is read as echo's binder reads it (one JSON
		// value, later data ignored; an empty body is no fields).
		var req auditapi.BulkReplayRequest
		readable := len(body) == 0 || json.NewDecoder(bytes.NewReader(body)).Decode(&req) == nil
		code, b := serve(t, "/v1/dead-letters/replay", key, by, body)
		limit := req.Limit
		if limit == 0 {
			limit = 100
		}
		var wantCode int
		switch {
		case !readable, req.Destination == "":
			wantCode = http.StatusBadRequest
		case !slices.Contains(destinations, req.Destination):
			wantCode = http.StatusUnprocessableEntity
		case limit < 0 || limit > MaxBulkReplay:
			wantCode = http.StatusBadRequest
		default:
			wantCode = http.StatusOK
		}
		if code != wantCode {
			t.Fatalf("bulk %q (read as %+v, readable %v): %d %s, want %d", body, req, readable, code, b, wantCode)
		}
		if code != http.StatusOK {
			problem(t, code, b)
			if len(st.filters) != 0 {
				t.Fatalf("bulk %q answered %d, but the store was asked for %+v", body, code, st.filters)
			}
			return
		}
		var res auditapi.BulkReplayResult
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatalf("bulk answer %s: %v", b, err)
		}
		want := store.DeliveryFilter{Destination: req.Destination, Status: auditapi.StatusDeadLettered, EventID: req.EventID, Source: req.Source, Q: req.Q}
		if req.Since != nil {
			want.Since = *req.Since
		}
		if req.Until != nil {
			want.Until = *req.Until
		}
		if len(st.filters) == 0 || !sameFilter(st.filters[0], want) || st.pages[0] != (store.Page{Limit: min(limit, store.MaxLimit)}) {
			t.Fatalf("bulk %q: the store was asked for %+v %+v, want %+v limit %d", body, st.filters, st.pages, want, min(limit, store.MaxLimit))
		}
		if res.DryRun != req.DryRun || res.Matched > limit || res.Matched != len(res.Results) || res.Replayed != 0 || res.Incomplete {
			t.Fatalf("bulk %+v: %s", req, b)
		}
		if !req.DryRun && res.Failed != res.Matched {
			t.Fatalf("bulk %+v without NATS: %s, want every match failed", req, b)
		}
		for _, r := range res.Results {
			if r.Destination != req.Destination {
				t.Fatalf("bulk for %q replayed a dead letter of %q", req.Destination, r.Destination)
			}
		}
		// The one dead letter of erp matches a request that names no
		// narrower filter.
		if req.EventID == "" && req.Source == "" && req.Q == "" && req.Since == nil && req.Until == nil {
			wantMatched := 0
			if req.Destination == "erp" {
				wantMatched = 1
			}
			if res.Matched != wantMatched {
				t.Fatalf("bulk %+v matched %d, want %d", req, res.Matched, wantMatched)
			}
		}
	})
}

// sameFilter compares filters, times as instants.
func sameFilter(a, b store.DeliveryFilter) bool {
	at, bt := a.TimeRange, b.TimeRange
	a.TimeRange, b.TimeRange = store.TimeRange{}, store.TimeRange{}
	return a == b && at.Since.Equal(bt.Since) && at.Until.Equal(bt.Until)
}
