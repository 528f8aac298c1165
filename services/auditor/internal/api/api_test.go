package api

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/switchyard/switchyard/pkg/testing/testctx"
	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/auditor/internal/store"
	"github.com/switchyard/switchyard/services/auditor/internal/store/storetest"
)

// testCtx is the test's context (testctx.New).
var testCtx = testctx.New

// backends open a fresh, migrated store.
var backends = map[string]func(t *testing.T) store.Store{
	"postgres": func(t *testing.T) store.Store { return migrated(t, storetest.OpenPostgres(t)) },
	"sqlite":   func(t *testing.T) store.Store { return migrated(t, storetest.OpenSQLite(t)) },
}

func migrated(t *testing.T, st store.Store) store.Store {
	t.Helper()
	if err := st.Migrate(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	return st
}

func forEachBackend(t *testing.T, fn func(t *testing.T, st store.Store)) {
	t.Helper()
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, open(t))
		})
	}
}

// get requests rawPath (already escaped) and decodes the JSON answer.
func get(t *testing.T, st store.Store, rawPath string) (int, map[string]any) {
	t.Helper()
	req := localRequest(http.MethodGet, rawPath, nil)
	rec := httptest.NewRecorder()
	New(Config{Store: st}).ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("GET %s: Content-Type %q", rawPath, ct)
	}
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("GET %s: %d, body is not a JSON object: %v: %s", rawPath, rec.Code, err, rec.Body)
	}
	return rec.Code, body
}

func write(t *testing.T, st store.Store, b store.Batch) {
	t.Helper()
	if err := st.Write(testCtx(t), b); err != nil {
		t.Fatal(err)
	}
}

func TestGetEvent(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, st store.Store) {
		write(t, st, storetest.FullBatch("shop:msg_1"))
		code, body := get(t, st, "/v1/events/shop:msg_1")
		if code != http.StatusOK {
			t.Fatalf("status = %d: %v", code, body)
		}
		for k, want := range map[string]any{
			"id":           "shop:msg_1",
			"subject":      "webhooks.shop.order_created",
			"source":       "shop",
			"type":         "order.created",
			"stream_seq":   42.0,
			"content_type": "application/json",
			"payload_size": float64(len(`{"order":42}`)),
			"payload":      `{"order":42}`,
			"known":        true,
		} {
			if body[k] != want {
				t.Errorf("%s = %#v, want %#v", k, body[k], want)
			}
		}
		if _, ok := body["payload_base64"]; ok {
			t.Error("a text payload is also sent as payload_base64")
		}
		ra, _ := body["received_at"].(string)
		if at, err := time.Parse(time.RFC3339Nano, ra); err != nil || !at.Equal(time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)) {
			t.Errorf("received_at = %q (%v)", ra, err)
		}
		if h, _ := body["headers"].(map[string]any); h["Switchyard-Source"] != "shop" {
			t.Errorf("headers = %v", body["headers"])
		}

		attempts, _ := body["attempts"].([]any)
		if len(attempts) != 4 {
			t.Fatalf("attempts = %v", body["attempts"])
		}
		first, _ := attempts[0].(map[string]any)
		for k, want := range map[string]any{
			"destination": "erp", "attempt": 1.0, "status_code": 503.0, "outcome": "retryable",
			"final": false, "event_id": "shop:msg_1", "duration_ms": 1.5, "error": "HTTP 503",
		} {
			if first[k] != want {
				t.Errorf("attempts[0].%s = %#v, want %#v", k, first[k], want)
			}
		}
		if _, ok := first["started_at"].(string); !ok {
			t.Errorf("attempts[0].started_at = %#v", first["started_at"])
		}
		var order []string
		for _, a := range attempts {
			m := a.(map[string]any)
			order = append(order, m["destination"].(string))
		}
		if strings.Join(order, ",") != "erp,crm,erp,erp" {
			t.Errorf("attempts not in time order: %v", order)
		}

		dls, _ := body["dead_letters"].([]any)
		if len(dls) != 1 {
			t.Fatalf("dead_letters = %v", body["dead_letters"])
		}
		dl := dls[0].(map[string]any)
		if dl["reason"] != "max_attempts" || dl["attempts"] != 3.0 || dl["last_status_code"] != 503.0 || dl["destination"] != "erp" {
			t.Errorf("dead letter = %v", dl)
		}
	})
}

func TestGetEventBinaryPayload(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, st store.Store) {
		payload := []byte{0x00, 0xff, 0xfe, 'a', 0x80}
		write(t, st, store.Batch{Events: []store.Routed{storetest.Event("ev-bin", payload)}})
		code, body := get(t, st, "/v1/events/ev-bin")
		if code != http.StatusOK {
			t.Fatalf("status = %d", code)
		}
		if _, ok := body["payload"]; ok {
			t.Errorf("binary payload sent as text: %#v", body["payload"])
		}
		b64, _ := body["payload_base64"].(string)
		got, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || string(got) != string(payload) {
			t.Errorf("payload_base64 = %q, want %q", b64, base64.StdEncoding.EncodeToString(payload))
		}
		if body["payload_size"] != 5.0 {
			t.Errorf("payload_size = %v", body["payload_size"])
		}
		// Lists are never null.
		if a, ok := body["attempts"].([]any); !ok || len(a) != 0 {
			t.Errorf("attempts = %#v, want []", body["attempts"])
		}
		if d, ok := body["dead_letters"].([]any); !ok || len(d) != 0 {
			t.Errorf("dead_letters = %#v, want []", body["dead_letters"])
		}
	})
}

func TestGetEventEmptyPayload(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, st store.Store) {
		write(t, st, store.Batch{Events: []store.Routed{storetest.Event("ev-empty", nil)}})
		code, body := get(t, st, "/v1/events/ev-empty")
		if code != http.StatusOK || body["payload_size"] != 0.0 {
			t.Errorf("status %d payload_size %v", code, body["payload_size"])
		}
		if p, ok := body["payload"]; ok && p != "" {
			t.Errorf("payload = %#v", p)
		}
	})
}

func TestGetEventKnownOnlyByAttempts(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, st store.Store) {
		write(t, st, store.Batch{Records: []*switchyardv1.AuditRecord{
			storetest.Attempt("ev-early", "erp", 1, time.Now(), 200, switchyardv1.Outcome_OUTCOME_DELIVERED, true),
		}})
		code, body := get(t, st, "/v1/events/ev-early")
		if code != http.StatusOK {
			t.Fatalf("status = %d", code)
		}
		if body["known"] != false {
			t.Errorf("known = %v for an event not yet stored", body["known"])
		}
		for _, k := range []string{"subject", "payload", "payload_base64", "stream_seq"} {
			if _, ok := body[k]; ok {
				t.Errorf("%s = %#v for an event not yet stored", k, body[k])
			}
		}
		if a, _ := body["attempts"].([]any); len(a) != 1 {
			t.Errorf("attempts = %v", body["attempts"])
		}
	})
}

func TestGetEventNotFound(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, st store.Store) {
		code, body := get(t, st, "/v1/events/nope")
		if code != http.StatusNotFound || body["error"] != "not_found" {
			t.Errorf("answer = %d %v, want 404 not_found", code, body)
		}
		if msg, _ := body["message"].(string); !strings.Contains(msg, `"nope"`) {
			t.Errorf("message = %q", msg)
		}
	})
}

// Event ids are free text (webhook ids are <source>:<delivery id>): a
// client that escapes them in the path must find the event.
func TestGetEventEscapedIDs(t *testing.T) {
	t.Parallel()
	st := backends["sqlite"](t)
	ids := []string{"shop:msg_1", "a/b", "100%sure", "with space", "ünï", "q?x#y"}
	var b store.Batch
	for _, id := range ids {
		b.Events = append(b.Events, storetest.Event(id, []byte(`{}`)))
	}
	write(t, st, b)
	for _, id := range ids {
		for _, path := range []string{
			"/v1/events/" + url.PathEscape(id),
			"/v1/events/" + strings.ReplaceAll(url.QueryEscape(id), "+", "%20"), // encodeURIComponent style
		} {
			code, body := get(t, st, path)
			if code != http.StatusOK || body["id"] != id {
				t.Errorf("GET %s = %d id %v, want 200 for %q", path, code, body["id"], id)
			}
		}
	}
}

func TestListRejections(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, st store.Store) {
		code, body := get(t, st, "/v1/rejections")
		if rs, ok := body["items"].([]any); code != http.StatusOK || !ok || len(rs) != 0 {
			t.Errorf("empty store: %d %v, want 200 with []", code, body)
		}

		base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		write(t, st, store.Batch{Records: []*switchyardv1.AuditRecord{
			storetest.Rejection("r1", base.Add(time.Second)),
			storetest.Rejection("r3", base.Add(3*time.Second)),
			storetest.Rejection("r2", base.Add(2*time.Second)),
		}})
		code, body = get(t, st, "/v1/rejections")
		rs, _ := body["items"].([]any)
		if code != http.StatusOK || len(rs) != 3 {
			t.Fatalf("%d %v", code, body)
		}
		first := rs[0].(map[string]any)
		for k, want := range map[string]any{
			"id": "r3", "source": "shop", "reason": "bad_signature", "detail": "signature does not match",
			"remote_addr": "203.0.113.7", "status_code": 401.0, "event_id": "msg_r3",
			"user_agent": "partner/1.0", "body_size": 20.0,
		} {
			if first[k] != want {
				t.Errorf("rejections[0].%s = %#v, want %#v", k, first[k], want)
			}
		}
		if at, _ := first["at"].(string); at == "" {
			t.Error("rejection without a time")
		}

		code, body = get(t, st, "/v1/rejections?limit=2")
		rs, _ = body["items"].([]any)
		if code != http.StatusOK || len(rs) != 2 || rs[0].(map[string]any)["id"] != "r3" || rs[1].(map[string]any)["id"] != "r2" {
			t.Errorf("limit=2: %d %v", code, body)
		}

		for _, bad := range []string{"0", "-1", "1001", "ten", "2.5"} {
			code, body := get(t, st, "/v1/rejections?limit="+bad)
			if msg, _ := body["message"].(string); code != http.StatusBadRequest || body["error"] != "bad_request" || !strings.Contains(msg, "limit") {
				t.Errorf("limit=%s: %d %v, want 400 naming limit", bad, code, body)
			}
		}
	})
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	New(Config{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("healthz = %d", rec.Code)
	}
}

// localRequest is a request as a program on this machine sends it: from
// loopback, addressed to 127.0.0.1 (an API without a token answers nothing
// else).
func localRequest(method, target string, body io.Reader) *http.Request {
	req := httptest.NewRequest(method, target, body)
	req.RemoteAddr = "127.0.0.1:40000"
	req.Host = "127.0.0.1:8081"
	return req
}
