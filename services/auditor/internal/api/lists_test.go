package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/auditapi"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
	"github.com/switchyard/switchyard/services/auditor/internal/store/storetest"
)

// getList pages through a list endpoint (limit 4) and returns every item.
func getList[T any](t *testing.T, h http.Handler, path string) []T {
	t.Helper()
	var out []T
	cursor := ""
	for range 100 {
		u := path + sep(path) + "limit=4"
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, localRequest(http.MethodGet, u, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", u, rec.Code, rec.Body)
		}
		var page auditapi.List[T]
		if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		out = append(out, page.Items...)
		if page.NextCursor == "" {
			return out
		}
		cursor = page.NextCursor
	}
	t.Fatalf("%s: pages never end", path)
	return nil
}

func sep(path string) string {
	if strings.Contains(path, "?") {
		return "&"
	}
	return "?"
}

// The store suite checks every filter; this checks that the HTTP
// parameters reach them, and that cursors carry across requests.
func TestListEndpoints(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, st store.Store) {
		storetest.Corpus(t, st)
		h := New(Config{Store: st, Now: func() time.Time { return time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC) }})

		evs := getList[auditapi.Event](t, h, "/v1/events?source=billing&type=order.created")
		if ids := eventIDs(evs); ids != "ev-27,ev-21,ev-15,ev-09,ev-03" {
			t.Errorf("events = %s", ids)
		}
		if evs[0].PayloadText != nil || evs[0].PayloadSize != 8 || evs[0].Subject != "webhooks.billing.order.created" {
			t.Errorf("listed event = %+v", evs[0])
		}
		for path, want := range map[string]int{
			"/v1/events":                                                       30,
			"/v1/events?subject=webhooks.shop.>":                               15,
			"/v1/events?event_id=ev-07":                                        1,
			"/v1/events?id_contains=v-2":                                       10,
			"/v1/events?status=dead_lettered&destination=erp":                  10,
			"/v1/events?q=refused":                                             5,
			"/v1/events?since=2026-03-01T12:10:00Z&until=2026-03-01T12:20:00Z": 10,
			// Relative: the last 10 minutes of a clock at 12:30.
			"/v1/events?since=10m": 10,
		} {
			if got := getList[auditapi.Event](t, h, path); len(got) != want {
				t.Errorf("GET %s: %d events, want %d", path, len(got), want)
			}
		}
		dls := getList[auditapi.Delivery](t, h, "/v1/deliveries?status=dead_lettered&destination=erp")
		if len(dls) != 10 || dls[0].EventID != "ev-27" || dls[0].Status != "dead_lettered" || dls[0].DeadLetterID != "EVENTS:127:erp" {
			t.Errorf("dead-lettered deliveries = %d, first %+v", len(dls), dls[0])
		}
		for path, want := range map[string]int{
			"/v1/deliveries":                                  36,
			"/v1/deliveries?destination=crm":                  6,
			"/v1/deliveries?event_id=ev-15":                   2,
			"/v1/deliveries?q=503":                            5,
			"/v1/deliveries?source=shop&type=order.paid":      6,
			"/v1/dead-letters?destination=erp":                10,
			"/v1/dead-letters?reason=max_attempts&q=refused":  5,
			"/v1/dead-letters?event_id=ev-09":                 1,
			"/v1/rejections?source=crm":                       4,
			"/v1/rejections?reason=stale_timestamp":           6,
			"/v1/rejections?q=old&since=2026-03-01T12:05:00Z": 4,
		} {
			var n int
			switch {
			case strings.HasPrefix(path, "/v1/deliveries"):
				n = len(getList[auditapi.Delivery](t, h, path))
			case strings.HasPrefix(path, "/v1/dead-letters"):
				n = len(getList[auditapi.DeadLetter](t, h, path))
			default:
				n = len(getList[auditapi.Rejection](t, h, path))
			}
			if n != want {
				t.Errorf("GET %s: %d items, want %d", path, n, want)
			}
		}

		code, body := get(t, st, "/v1/dead-letters/EVENTS:103:erp")
		if code != http.StatusOK || body["event_id"] != "ev-03" || body["replays"] != 0.0 {
			t.Errorf("GET dead letter: %d %v", code, body)
		}
		if code, body := get(t, st, "/v1/dead-letters/nope"); code != http.StatusNotFound || body["error"] != "not_found" {
			t.Errorf("GET unknown dead letter: %d %v", code, body)
		}
	})
}

func TestListAlerts(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, st store.Store) {
		base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		var b store.Batch
		for i := range 6 {
			rec := storetest.AlertRecord(fmt.Sprintf("al-%d", i), base.Add(time.Duration(i)*time.Minute))
			if i%2 == 1 {
				a := rec.GetAlert()
				a.State, a.Kind = switchyardv1.AlertState_ALERT_STATE_RESOLVED, "resolved"
				a.Labels = map[string]string{"destination": "crm"}
			}
			if i == 4 {
				rec.GetAlert().Delivered, rec.GetAlert().Error = false, "invalid_payload"
			}
			b.Records = append(b.Records, rec)
		}
		if err := st.Write(t.Context(), b); err != nil {
			t.Fatal(err)
		}
		h := New(Config{Store: st, Now: func() time.Time { return base.Add(10 * time.Minute) }})
		all := getList[auditapi.Alert](t, h, "/v1/alerts")
		if len(all) != 6 || all[0].ID != "al-5" || all[0].State != "resolved" || all[0].Labels["destination"] != "crm" ||
			all[0].Rule != "DeliveryDeadLettered" || all[0].Sender != "slack" || !all[0].Delivered || all[0].Count != 3 {
			t.Errorf("alerts = %+v", all)
		}
		for path, want := range map[string]int{
			"/v1/alerts?state=firing":                    3,
			"/v1/alerts?state=resolved&destination=crm":  3,
			"/v1/alerts?destination=erp&delivered=false": 1,
			"/v1/alerts?rule=DeliveryDeadLettered":       6,
			"/v1/alerts?rule=PartnerDown":                0,
			"/v1/alerts?since=7m":                        3, // from 12:03 on a clock at 12:10
		} {
			if got := getList[auditapi.Alert](t, h, path); len(got) != want {
				t.Errorf("GET %s: %d alerts, want %d", path, len(got), want)
			}
		}
		for _, path := range []string{"/v1/alerts?state=asleep", "/v1/alerts?delivered=maybe"} {
			if code, body := get(t, st, path); code != http.StatusBadRequest || body["error"] != "bad_request" {
				t.Errorf("GET %s: %d %v, want 400", path, code, body)
			}
		}
	})
}

func eventIDs(evs []auditapi.Event) string {
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.ID)
	}
	return strings.Join(ids, ",")
}

func TestListParameterErrors(t *testing.T) {
	t.Parallel()
	st := backends["sqlite"](t)
	for _, path := range []string{
		"/v1/events?limit=0",
		"/v1/events?status=lost",
		"/v1/events?since=yesterday",
		"/v1/events?since=2026-03-02T00:00:00Z&until=2026-03-01T00:00:00Z",
		"/v1/deliveries?status=done",
		"/v1/dead-letters?until=soon",
		"/v1/rejections?limit=5000",
		"/v1/destinations?window=forever",
	} {
		code, body := get(t, st, path)
		if code != http.StatusBadRequest || body["error"] != "bad_request" || body["message"] == "" {
			t.Errorf("GET %s: %d %v, want 400 with a message", path, code, body)
		}
	}
	for path, want := range map[string]string{
		"/v1/records":               "kind must be one of duplicate, backlog, lag, alert, silence, poll, quarantined, valid, released, filtered, other",
		"/v1/records?kind=rejected": "rejected records are listed by /v1/rejections",
	} {
		if code, body := get(t, st, path); code != http.StatusBadRequest || body["message"] != want {
			t.Errorf("GET %s: %d %v, want 400 %q", path, code, body, want)
		}
	}
	for _, path := range []string{"/v1/events?cursor=nonsense", "/v1/deliveries?cursor=e30"} {
		code, body := get(t, st, path)
		if code != http.StatusBadRequest || body["error"] != "bad_cursor" {
			t.Errorf("GET %s: %d %v, want 400 bad_cursor", path, code, body)
		}
	}
	if code, body := get(t, st, "/v1/nothing-here"); code != http.StatusNotFound || body["error"] != "not_found" {
		t.Errorf("unknown route: %d %v", code, body)
	}
}

func TestAdminToken(t *testing.T) {
	t.Parallel()
	st := backends["sqlite"](t)
	const token = "s3cret-admin-token-0123"
	h := New(Config{Store: st, AdminToken: token})
	do := func(method, path, auth string) *httptest.ResponseRecorder {
		req := localRequest(method, path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for _, auth := range []string{"", "Bearer wrong", "Bearer " + token + "x", "Basic " + token, token} {
		for _, path := range []string{"/v1/events", "/v1/events/x", "/v1/destinations", "/v1/rejections"} {
			rec := do(http.MethodGet, path, auth)
			if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), `"unauthorized"`) || rec.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("GET %s with %q: %d %s, want 401", path, auth, rec.Code, rec.Body)
			}
			if strings.Contains(rec.Body.String(), token) {
				t.Errorf("the answer reveals the token: %s", rec.Body)
			}
		}
		if rec := do(http.MethodPost, "/v1/dead-letters/x/replay", auth); rec.Code != http.StatusUnauthorized {
			t.Errorf("replay with %q: %d, want 401", auth, rec.Code)
		}
	}
	if rec := do(http.MethodGet, "/v1/events", "Bearer "+token); rec.Code != http.StatusOK {
		t.Errorf("with the token: %d %s", rec.Code, rec.Body)
	}
	if rec := do(http.MethodGet, "/healthz", ""); rec.Code != http.StatusOK {
		t.Errorf("healthz needs no token: %d", rec.Code)
	}
}
